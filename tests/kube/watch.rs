//! Status and discovery through the shared watch: a pod stuck without a GPU fails its
//! session with the scheduler's reason; after a restart `list` finds every session pod by
//! label, and an orphan is deleted with `stop`.

use std::sync::Arc;

use daas::runtime::kube::manifests::{self, Workload};
use daas::runtime::kube::KubeHandle;
use daas::runtime::{LaunchSpec, Observed, Runtime};
use http::Method;
use serde_json::{json, Value};

use crate::common::*;

/// A session's pod as the API server lists it: what daas created, plus status.
fn pod_of(spec: &LaunchSpec, status: Value) -> Value {
    let names = KubeHandle::new(NS, spec.session_id, spec.kind, &spec.owner);
    let mut pod = match manifests::workload(spec, &args(&[]), &names).unwrap() {
        Workload::Pod(p) => serde_json::to_value(p).unwrap(),
        Workload::Job(j) => {
            // The Job controller's pod: the template's labels and annotations, its own name.
            let j = serde_json::to_value(j).unwrap();
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": format!("{}-x7k2p", names.workload),
                    "labels": j["spec"]["template"]["metadata"]["labels"],
                    "annotations": j["spec"]["template"]["metadata"]["annotations"],
                },
                "spec": j["spec"]["template"]["spec"],
            })
        }
    };
    pod["metadata"]["namespace"] = json!(NS);
    pod["metadata"]["uid"] = json!(format!("uid-{}", spec.session_id));
    pod["metadata"]["resourceVersion"] = json!("90");
    pod["metadata"]["creationTimestamp"] = json!(k8s_openapi::chrono::Utc::now().to_rfc3339());
    pod["status"] = status;
    pod
}

#[tokio::test]
async fn a_pod_without_a_free_gpu_fails_with_the_schedulers_reason() {
    let (rt, mut api) = runtime(args(&[]));
    let rt = Arc::new(rt);
    let spec = gpu_job();
    let pod = pod_of(&spec, json!({"phase": "Pending"}));
    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let now = k8s_openapi::chrono::Utc::now();
    let events = vec![
        json!({
            "metadata": {"name": format!("{pod_name}.1"), "namespace": NS},
            "involvedObject": {"kind": "Pod", "name": pod_name, "namespace": NS},
            "reason": "FailedScheduling", "type": "Warning",
            "message": "0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity/selector.",
            "lastTimestamp": now.to_rfc3339(),
        }),
        // Another pod's event does not count.
        json!({
            "metadata": {"name": "other.1", "namespace": NS},
            "involvedObject": {"kind": "Pod", "name": "other", "namespace": NS},
            "reason": "Pulling", "message": "Pulling image", "lastTimestamp": now.to_rfc3339(),
        }),
    ];
    let handle = KubeHandle::new(NS, spec.session_id, spec.kind, &spec.owner).to_handle();
    let task = {
        let rt = rt.clone();
        let handle = handle.clone();
        tokio::spawn(async move { rt.observe(spec.session_id, &handle).await })
    };
    api.serve_watch(vec![pod], events).await;
    let observed = task.await.unwrap().unwrap();
    let Observed::Failed { reason } = observed else { panic!("expected a failure, got {observed:?}") };
    assert!(reason.starts_with("no node with a free GPU"), "{reason}");
    assert!(reason.contains("2 Insufficient nvidia.com/gpu"), "{reason}");
    api.assert_watching().await;

    // Read again: from the store, without another call.
    let again = rt.observe(spec.session_id, &handle).await.unwrap();
    assert!(matches!(again, Observed::Failed { .. }));
    api.done().await;
}

#[tokio::test]
async fn a_restart_finds_every_session_pod_and_an_orphan_can_be_deleted() {
    let (rt, mut api) = runtime(args(&[]));
    let rt = Arc::new(rt);
    let (known, orphan, job) = (desktop(), notebook(), gpu_job());
    let pods = vec![
        pod_of(&known, json!({"phase": "Running"})),
        pod_of(&orphan, json!({"phase": "Pending"})),
        pod_of(&job, json!({"phase": "Running"})),
    ];
    let task = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.list().await })
    };
    api.serve_watch(pods, vec![]).await;
    let mut found = task.await.unwrap().unwrap();
    found.sort_by_key(|f| f.session_id);
    api.assert_watching().await;

    assert_eq!(found.len(), 3);
    for (f, spec) in found.iter().zip([&known, &orphan, &job]) {
        assert_eq!(f.session_id, spec.session_id);
        // The handle is the one stored at launch, names resolved, found again from the pod.
        assert_eq!(f.handle, KubeHandle::new(NS, spec.session_id, spec.kind, &spec.owner).to_handle());
    }

    // The job's log comes from its pod, found through the watch.
    let task = {
        let rt = rt.clone();
        let handle = found[2].handle.clone();
        tokio::spawn(async move { rt.logs(id(3), &handle, 50).await })
    };
    let log = api.expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods/daas-{}-x7k2p/log", id(3))).await;
    assert!(log.query.contains("tailLines=50") && log.query.contains("container=session"), "{}", log.query);
    log.respond_text("progress 10/2048\n");
    assert_eq!(task.await.unwrap().unwrap(), "progress 10/2048\n");

    // The reconciler knows no session for the orphan and stops it by its found handle.
    let task = {
        let rt = rt.clone();
        let orphan_handle = found[1].handle.clone();
        tokio::spawn(async move { rt.stop(orphan.session_id, &orphan_handle).await })
    };
    let delete = api.expect(Method::DELETE, &format!("/api/v1/namespaces/{NS}/pods/daas-{}", id(2))).await;
    delete.respond(200, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}));
    task.await.unwrap().unwrap();
    api.done().await;
}

#[tokio::test]
async fn a_session_the_watch_has_not_seen_is_asked_for_once() {
    let (rt, mut api) = runtime(args(&[]));
    let rt = Arc::new(rt);
    let spec = desktop();
    let handle = KubeHandle::new(NS, spec.session_id, spec.kind, &spec.owner).to_handle();
    let task = {
        let rt = rt.clone();
        let handle = handle.clone();
        tokio::spawn(async move { rt.observe(spec.session_id, &handle).await })
    };
    api.serve_watch(vec![], vec![]).await;
    api.expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods/daas-{}", spec.session_id))
        .await
        .status(404, "NotFound");
    api.assert_watching().await;
    assert_eq!(task.await.unwrap().unwrap(), Observed::Gone);
    api.done().await;
}

#[tokio::test]
async fn a_watch_event_moves_a_session_to_running_without_a_call() {
    let (rt, mut api) = runtime(args(&[]));
    let rt = Arc::new(rt);
    let spec = desktop();
    let handle = KubeHandle::new(NS, spec.session_id, spec.kind, &spec.owner).to_handle();
    let pending = pod_of(&spec, json!({"phase": "Pending"}));
    let task = {
        let rt = rt.clone();
        let handle = handle.clone();
        tokio::spawn(async move { rt.observe(spec.session_id, &handle).await })
    };
    api.serve_watch(vec![pending.clone()], vec![]).await;
    assert!(matches!(task.await.unwrap().unwrap(), Observed::Pending { .. }));
    api.assert_watching().await;

    let mut running = pending;
    running["metadata"]["resourceVersion"] = json!("101");
    running["status"] = json!({"phase": "Running", "containerStatuses": [{
        "name": "session", "image": "i", "imageID": "", "ready": true, "restartCount": 0}]});
    api.answer_watch(&format!("/api/v1/namespaces/{NS}/pods"), &[json!({"type": "MODIFIED", "object": running})]);
    let mut observed = Observed::Gone;
    for _ in 0..100 {
        observed = rt.observe(spec.session_id, &handle).await.unwrap();
        if matches!(observed, Observed::Running { .. }) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(observed, Observed::Running { endpoint: format!("daas-{}.{NS}.svc:5901", spec.session_id) });
    api.done().await;
}
