//! Launch and stop against the mocked API server: the objects created, a 409 adopted or
//! replaced, a 500 retried, deletes.

use daas::runtime::kube::manifests::{self, owner_reference, Workload};
use daas::runtime::kube::{KubeArgs, KubeHandle, KubeRuntime};
use daas::runtime::{Handle, Kind, LaunchSpec, Runtime};
use http::Method;
use serde_json::{json, Value};

use crate::common::*;

const PVCS: &str = "/api/v1/namespaces/sessions/persistentvolumeclaims";
const PODS: &str = "/api/v1/namespaces/sessions/pods";
const SECRETS: &str = "/api/v1/namespaces/sessions/secrets";
const SERVICES: &str = "/api/v1/namespaces/sessions/services";
const JOBS: &str = "/apis/batch/v1/namespaces/sessions/jobs";
const POLICIES: &str = "/apis/networking.k8s.io/v1/namespaces/sessions/networkpolicies";

/// What the runtime must send, as JSON, for a workload with uid `uid`.
fn expected(spec: &LaunchSpec, args: &KubeArgs, uid: &str) -> Vec<Value> {
    let names = KubeHandle::new(NS, spec.session_id, spec.kind, &spec.owner);
    let m = manifests::build(spec, args, &names, &owner_reference(spec.kind, &names.workload, uid)).unwrap();
    let mut all = vec![serde_json::to_value(&m.home_claim).unwrap()];
    all.push(match &m.workload {
        Workload::Pod(p) => serde_json::to_value(p).unwrap(),
        Workload::Job(j) => serde_json::to_value(j).unwrap(),
    });
    all.extend(m.secret.map(|s| serde_json::to_value(s).unwrap()));
    all.extend(m.service.map(|s| serde_json::to_value(s).unwrap()));
    all.push(serde_json::to_value(&m.network_policy).unwrap());
    all
}

fn launch(rt: KubeRuntime, spec: LaunchSpec) -> tokio::task::JoinHandle<(KubeRuntime, anyhow::Result<Handle>)> {
    tokio::spawn(async move {
        let result = rt.launch(&spec).await;
        (rt, result)
    })
}

#[tokio::test]
async fn launching_a_desktop_creates_its_objects() {
    let args = args(&[]);
    let (rt, mut api) = runtime(args.clone());
    let spec = desktop();
    let want = expected(&spec, &args, "pod-uid-1");
    let task = launch(rt, spec.clone());

    let pvc = api.expect(Method::POST, PVCS).await;
    assert_eq!(pvc.body, want[0]);
    assert_eq!(pvc.body["metadata"]["name"], "daas-home-alice");
    pvc.created("pvc-uid");

    let pod = api.expect(Method::POST, PODS).await;
    assert_eq!(pod.body, want[1]);
    let container = &pod.body["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.org/daas/desktop:1.0");
    assert_eq!(container["resources"]["limits"]["memory"], "4096Mi");
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(pod.body["spec"]["securityContext"]["runAsUser"], spec.uid);
    assert_eq!(pod.body["metadata"]["labels"]["daas.io/session-id"], spec.session_id.to_string());
    let mounts = container["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().filter(|m| m["name"] == "data").all(|m| m["readOnly"] == true));
    assert!(!pod.body.to_string().contains("test-secret-not-real"), "the secret is not in the pod");
    pod.created("pod-uid-1");

    let secret = api.expect(Method::POST, SECRETS).await;
    assert_eq!(secret.body, want[2]);
    assert_eq!(secret.body["stringData"]["password"], "test-secret-not-real");
    assert_eq!(secret.body["metadata"]["ownerReferences"][0]["uid"], "pod-uid-1");
    secret.created("secret-uid");

    let service = api.expect(Method::POST, SERVICES).await;
    assert_eq!(service.body, want[3]);
    assert_eq!(service.body["spec"]["ports"][0]["port"], 5901);
    service.created("service-uid");

    let policy = api.expect(Method::POST, POLICIES).await;
    assert_eq!(policy.body, want[4]);
    assert_eq!(policy.body["metadata"]["ownerReferences"][0]["kind"], "Pod");
    assert_eq!(policy.body["spec"]["egress"], json!([]));
    policy.created("policy-uid");

    let (_, handle) = task.await.unwrap();
    let handle = KubeHandle::from_handle(&handle.unwrap()).unwrap();
    assert_eq!(handle.workload, format!("daas-{}", spec.session_id));
    assert_eq!(handle.home_claim, "daas-home-alice");
    api.done().await;
}

#[tokio::test]
async fn a_conflict_adopts_what_is_ours_and_replaces_what_is_stale() {
    let args = args(&[]);
    let (rt, mut api) = runtime(args.clone());
    let spec = notebook();
    let name = format!("daas-{}", spec.session_id);
    let want = expected(&spec, &args, "earlier-uid");
    let task = launch(rt, spec.clone());

    // The home exists from an earlier session: kept.
    api.expect(Method::POST, PVCS).await.status(409, "AlreadyExists");
    // The pod exists (a launch interrupted by a restart): adopted, not duplicated.
    api.expect(Method::POST, PODS).await.status(409, "AlreadyExists");
    let mut existing = want[1].clone();
    existing["metadata"]["uid"] = json!("earlier-uid");
    api.expect(Method::GET, &format!("{PODS}/{name}")).await.respond(200, existing);
    // Its secret too, owned by that pod: adopted.
    let secret = api.expect(Method::POST, SECRETS).await;
    assert_eq!(secret.body, want[2]);
    // The notebook's token never goes to the cluster: only its hash.
    assert_eq!(secret.body["stringData"]["token.sha256"], daas::runtime::token_hash("test-secret-not-real"));
    assert!(!secret.body.to_string().contains("test-secret-not-real"));
    secret.status(409, "AlreadyExists");
    let mut owned = want[2].clone();
    owned["metadata"]["uid"] = json!("secret-uid");
    api.expect(Method::GET, &format!("{SECRETS}/{name}")).await.respond(200, owned);
    // A service left by an older pod of the same name: replaced.
    api.expect(Method::POST, SERVICES).await.status(409, "AlreadyExists");
    let mut stale = want[3].clone();
    stale["metadata"]["ownerReferences"][0]["uid"] = json!("older-uid");
    api.expect(Method::GET, &format!("{SERVICES}/{name}")).await.respond(200, stale.clone());
    let delete = api.expect(Method::DELETE, &format!("{SERVICES}/{name}")).await;
    assert_eq!(delete.body["propagationPolicy"], "Background");
    delete.respond(200, stale);
    let service = api.expect(Method::POST, SERVICES).await;
    assert_eq!(service.body["metadata"]["ownerReferences"][0]["uid"], "earlier-uid");
    assert_eq!(service.body["spec"]["ports"][0]["port"], 8888);
    service.created("service-uid");
    api.expect(Method::POST, POLICIES).await.created("policy-uid");

    let (_, handle) = task.await.unwrap();
    assert_eq!(KubeHandle::from_handle(&handle.unwrap()).unwrap().workload, name);
    api.done().await;
}

#[tokio::test]
async fn a_pod_of_another_session_is_not_adopted() {
    let (rt, mut api) = runtime(args(&[]));
    let spec = desktop();
    let name = format!("daas-{}", spec.session_id);
    let task = launch(rt, spec);
    api.expect(Method::POST, PVCS).await.created("pvc-uid");
    api.expect(Method::POST, PODS).await.status(409, "AlreadyExists");
    api.expect(Method::GET, &format!("{PODS}/{name}")).await.respond(
        200,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "uid": "x", "labels": {"daas.io/session-id": id(99).to_string()}},
        }),
    );
    let (_, result) = task.await.unwrap();
    assert!(result.unwrap_err().to_string().contains("is not this session's"));
    api.done().await;
}

#[tokio::test]
async fn a_server_error_is_retried() {
    let args = args(&[]);
    let (rt, mut api) = runtime(args.clone());
    let spec = gpu_job();
    let want = expected(&spec, &args, "job-uid");
    let task = launch(rt, spec.clone());

    api.expect(Method::POST, PVCS).await.created("pvc-uid");
    api.expect(Method::POST, JOBS).await.status(500, "InternalError");
    let job = api.expect(Method::POST, JOBS).await;
    assert_eq!(job.body, want[1]);
    let pod = &job.body["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(pod["nodeSelector"]["nvidia.com/gpu.product"], "NVIDIA-A100-SXM4-40GB");
    assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
    assert_eq!(job.body["spec"]["backoffLimit"], 0);
    job.created("job-uid");
    // A job has no secret and no service; its policy admits nothing.
    let policy = api.expect(Method::POST, POLICIES).await;
    assert_eq!(policy.body, want[2]);
    assert_eq!(policy.body["spec"]["ingress"], json!([]));
    assert_eq!(policy.body["metadata"]["ownerReferences"][0]["kind"], "Job");
    policy.created("policy-uid");

    let (_, handle) = task.await.unwrap();
    assert_eq!(KubeHandle::from_handle(&handle.unwrap()).unwrap().kind, Kind::Job);
    api.done().await;
}

#[tokio::test]
async fn a_call_without_an_answer_times_out_and_is_retried() {
    let (rt, mut api) = runtime(args(&["--kube-request-timeout-seconds", "1"]));
    let task = launch(rt, gpu_job());
    let started = std::time::Instant::now();
    let _silent = api.expect(Method::POST, PVCS).await.unanswered();
    api.expect(Method::POST, PVCS).await.created("pvc-uid");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    api.expect(Method::POST, JOBS).await.created("job-uid");
    api.expect(Method::POST, POLICIES).await.created("policy-uid");
    task.await.unwrap().1.unwrap();
    api.done().await;
}

#[tokio::test]
async fn a_launch_fails_after_its_attempts() {
    let (rt, mut api) = runtime(args(&["--kube-attempts", "2"]));
    let task = launch(rt, desktop());
    api.expect(Method::POST, PVCS).await.status(503, "ServiceUnavailable");
    api.expect(Method::POST, PVCS).await.status(503, "ServiceUnavailable");
    let (_, result) = task.await.unwrap();
    let error = result.unwrap_err().to_string();
    assert!(error.contains("503"), "{error}");
    api.done().await;
}

#[tokio::test]
async fn a_launch_that_fails_halfway_removes_its_workload() {
    let (rt, mut api) = runtime(args(&[]));
    let spec = desktop();
    let name = format!("daas-{}", spec.session_id);
    let task = launch(rt, spec);
    api.expect(Method::POST, PVCS).await.created("pvc-uid");
    api.expect(Method::POST, PODS).await.created("pod-uid");
    // Refused (not retried): the pod must not run without its secret.
    api.expect(Method::POST, SECRETS).await.status(422, "Invalid");
    let delete = api.expect(Method::DELETE, &format!("{PODS}/{name}")).await;
    assert_eq!(delete.body["propagationPolicy"], "Background");
    delete.respond(200, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}));
    let (_, result) = task.await.unwrap();
    assert!(result.unwrap_err().to_string().contains("422"));
    api.done().await;
}

#[tokio::test]
async fn bad_input_fails_before_any_call() {
    let (rt, api) = runtime(args(&[]));
    let mut spec = desktop();
    spec.datasets[0].location = "../../etc".into();
    let error = rt.launch(&spec).await.unwrap_err().to_string();
    assert!(error.contains("not a relative path"), "{error}");
    let mut spec = desktop();
    spec.resources.tolerations = vec![json!({"effect": 3})];
    assert!(rt.launch(&spec).await.is_err());
    api.done().await;
}

#[tokio::test]
async fn stop_deletes_the_workload_and_succeeds_when_gone() {
    let (rt, mut api) = runtime(args(&[]));
    let rt = std::sync::Arc::new(rt);
    for (spec, path) in [(desktop(), PODS), (gpu_job(), JOBS)] {
        let handle = KubeHandle::new(NS, spec.session_id, spec.kind, &spec.owner).to_handle();
        let task = {
            let rt = rt.clone();
            let handle = handle.clone();
            tokio::spawn(async move { rt.stop(spec.session_id, &handle).await })
        };
        let delete = api.expect(Method::DELETE, &format!("{path}/daas-{}", spec.session_id)).await;
        // The garbage collector removes the secret, service and policy it owns.
        assert_eq!(delete.body["propagationPolicy"], "Background");
        delete.respond(200, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}));
        task.await.unwrap().unwrap();

        let task = {
            let rt = rt.clone();
            tokio::spawn(async move { rt.stop(spec.session_id, &handle).await })
        };
        api.expect(Method::DELETE, &format!("{path}/daas-{}", spec.session_id)).await.status(404, "NotFound");
        task.await.unwrap().expect("stopping what is gone succeeds");
    }
    // A handle from another namespace is refused without a call.
    let elsewhere = KubeHandle::new("elsewhere", id(9), Kind::Desktop, "alice").to_handle();
    let error = rt.stop(id(9), &elsewhere).await.unwrap_err().to_string();
    assert!(error.contains("namespace elsewhere"), "{error}");
    api.done().await;
}

#[tokio::test]
async fn rotating_a_notebooks_secret_patches_its_token_hash_and_a_desktop_keeps_its_password() {
    let (rt, mut api) = runtime(args(&[]));
    let rt = std::sync::Arc::new(rt);
    let spec = notebook();
    let handle = KubeHandle::new(NS, spec.session_id, spec.kind, &spec.owner).to_handle();
    let task = {
        let (rt, handle) = (rt.clone(), handle.clone());
        tokio::spawn(async move { rt.rotate_secret(spec.session_id, &handle, Kind::Notebook, "new-secret").await })
    };
    let patch = api.expect(Method::PATCH, &format!("{SECRETS}/daas-{}", spec.session_id)).await;
    // Only the hash goes to the cluster, as a merge patch of the mounted key.
    assert_eq!(patch.body, json!({"stringData": {"token.sha256": daas::runtime::token_hash("new-secret")}}));
    assert!(!patch.body.to_string().contains("new-secret"));
    patch.respond(200, json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "x"}}));
    assert!(task.await.unwrap().unwrap(), "a notebook's secret is replaced");

    // A desktop's VNC server read its password from its environment at start: no call.
    let spec = desktop();
    let handle = KubeHandle::new(NS, spec.session_id, spec.kind, &spec.owner).to_handle();
    assert!(!rt.rotate_secret(spec.session_id, &handle, Kind::Desktop, "new").await.unwrap());
    api.done().await;
}
