//! What a session's pod and its Kubernetes Events mean for the user: the `Observed` state
//! with a progress message, failing fast where the pod cannot start (no free GPU, image
//! not found). Pure functions over what the watcher holds.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::chrono::{DateTime, Utc};

use super::manifests::port;
use super::names::KubeHandle;
use crate::runtime::{Kind, Observed};

/// The time an Event last happened, whichever of its fields the emitter filled.
fn event_time(e: &Event) -> Option<DateTime<Utc>> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Words for the user from the scheduler's "0/3 nodes are available: ..." message; `Err`
/// when waiting cannot help.
fn unschedulable(message: &str) -> Result<String, String> {
    if message.contains("nvidia.com/gpu") {
        Err(format!("no node with a free GPU ({message})"))
    } else {
        Ok(format!("waiting for a node with room for the session ({message})"))
    }
}

/// Whether an image pull failure is final (the image does not exist or is refused).
fn image_missing(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["not found", "manifest unknown", "repository does not exist", "pull access denied", "invalid reference"]
        .iter()
        .any(|needle| m.contains(needle))
}

/// The latest event's meaning: `Err` where the session cannot start.
fn event_message(e: &Event, image: &str) -> Result<String, String> {
    let message = e.message.clone().unwrap_or_default();
    match e.reason.as_deref().unwrap_or_default() {
        "FailedScheduling" => unschedulable(&message),
        "Scheduled" => Ok("scheduled on a node".into()),
        "Pulling" => Ok(format!("pulling image {image}")),
        "Pulled" => Ok("image pulled".into()),
        "Created" | "Started" => Ok("the container starts".into()),
        "Failed" | "ErrImagePull" | "InspectFailed" if image_missing(&message) => {
            Err(format!("image not found: {image}"))
        }
        "FailedMount" => Ok(format!("waiting for a volume ({message})")),
        _ if message.is_empty() => Ok("the container starts".into()),
        _ => Ok(message),
    }
}

/// What `observe` reports for a session given its pod (as the watcher sees it) and the
/// Events about that pod.
pub fn observe_pod(
    handle: &KubeHandle,
    pod: &Pod,
    events: &[&Event],
    now: DateTime<Utc>,
    start_timeout: Duration,
) -> Observed {
    if pod.metadata.deletion_timestamp.is_some() {
        return Observed::Exited { exit_code: None, message: "the pod is being deleted".into() };
    }
    let status = pod.status.clone().unwrap_or_default();
    let container = status.container_statuses.as_deref().unwrap_or_default().first().cloned();
    let image = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default();
    let terminated = container.as_ref().and_then(|c| c.state.as_ref()).and_then(|s| s.terminated.clone());
    match status.phase.as_deref() {
        Some("Succeeded") => {
            return Observed::Exited {
                exit_code: Some(terminated.map_or(0, |t| t.exit_code)),
                message: "finished".into(),
            }
        }
        Some("Failed") => {
            let message = terminated
                .as_ref()
                .and_then(|t| t.message.clone().or_else(|| t.reason.clone()))
                .or_else(|| status.message.clone())
                .or_else(|| status.reason.clone())
                .unwrap_or_else(|| "the pod failed".into());
            return Observed::Exited { exit_code: terminated.map(|t| t.exit_code), message };
        }
        Some("Running") => {
            if handle.kind == Kind::Job {
                return Observed::Running { endpoint: String::new() };
            }
            if container.as_ref().is_some_and(|c| c.ready) {
                let (_, port) = port(handle.kind).unwrap_or(("", 0));
                let service = handle.service.as_deref().unwrap_or(&handle.workload);
                return Observed::Running { endpoint: format!("{service}.{}.svc:{port}", handle.namespace) };
            }
            return Observed::Pending { message: "waiting for the session to answer".into() };
        }
        _ => {}
    }

    // Pending: the container's waiting reason says most, then the scheduler, then Events.
    let waiting = container.as_ref().and_then(|c| c.state.as_ref()).and_then(|s| s.waiting.clone());
    let mut progress: Result<String, String> = Ok("the container starts".into());
    if let Some(latest) = events.iter().filter_map(|e| event_time(e).map(|t| (t, *e))).max_by_key(|(t, _)| *t) {
        progress = event_message(latest.1, &image);
    }
    if let Some(cond) = status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        if cond.reason.as_deref() == Some("Unschedulable") {
            progress = unschedulable(cond.message.as_deref().unwrap_or("no node fits"));
        }
    }
    if let Some(w) = waiting {
        let message = w.message.clone().unwrap_or_default();
        match w.reason.as_deref().unwrap_or_default() {
            "InvalidImageName" => progress = Err(format!("image not found: {image}")),
            "ErrImagePull" | "ImagePullBackOff" if image_missing(&message) => {
                progress = Err(format!("image not found: {image}"))
            }
            "ErrImagePull" | "ImagePullBackOff" => progress = Ok(format!("cannot pull image {image} yet ({message})")),
            "ContainerCreating" | "PodInitializing" => {}
            "CreateContainerConfigError" => progress = Ok("preparing the session".into()),
            other if !other.is_empty() && progress.is_ok() => progress = Ok(other.to_owned()),
            _ => {}
        }
    }
    match progress {
        Err(reason) => Observed::Failed { reason },
        Ok(message) => {
            let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let waited = created.map(|c| (now - c).to_std().unwrap_or_default());
            match waited {
                Some(waited) if waited > start_timeout => Observed::Failed {
                    reason: format!("did not start within {} s: {message}", start_timeout.as_secs()),
                },
                _ => Observed::Pending { message },
            }
        }
    }
}

/// A Job whose pod the watch does not hold: finished and cleaned up, failed before making
/// one (a quota, an admission webhook), or about to make one.
pub fn observe_podless_job(job: &Job, now: DateTime<Utc>, start_timeout: Duration) -> Observed {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    for c in conditions.iter().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" => return Observed::Exited { exit_code: Some(0), message: "finished".into() },
            "Failed" => {
                let message = c.message.clone().or_else(|| c.reason.clone()).unwrap_or_else(|| "the job failed".into());
                return Observed::Exited { exit_code: None, message };
            }
            _ => {}
        }
    }
    let created = job.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match created.map(|c| (now - c).to_std().unwrap_or_default()) {
        Some(waited) if waited > start_timeout => {
            Observed::Failed { reason: format!("the job made no pod within {} s", start_timeout.as_secs()) }
        }
        _ => Observed::Pending { message: "waiting for the job's pod".into() },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn handle(kind: Kind) -> KubeHandle {
        KubeHandle::new("sessions", Uuid::nil(), kind, "alice")
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-11-21T10:00:00Z"},
            "spec": {"containers": [{"name": "session", "image": "registry/desktop:1"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn event(reason: &str, message: &str, at: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("p.{reason}")},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": reason, "message": message, "lastTimestamp": at,
        }))
        .unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const TIMEOUT: Duration = Duration::from_secs(600);

    #[test]
    fn events_become_progress() {
        let p = pod(json!({"phase": "Pending"}));
        let pulling = event("Pulling", "Pulling image", "2026-11-21T10:00:05Z");
        let scheduled = event("Scheduled", "assigned", "2026-11-21T10:00:01Z");
        let seen =
            observe_pod(&handle(Kind::Desktop), &p, &[&pulling, &scheduled], at("2026-11-21T10:00:06Z"), TIMEOUT);
        assert_eq!(seen, Observed::Pending { message: "pulling image registry/desktop:1".into() });
    }

    #[test]
    fn missing_image_fails_fast() {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "session", "image": "registry/desktop:1", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull", "message": "manifest unknown"}}}]}));
        let seen = observe_pod(&handle(Kind::Desktop), &p, &[], at("2026-11-21T10:00:06Z"), TIMEOUT);
        assert_eq!(seen, Observed::Failed { reason: "image not found: registry/desktop:1".into() });
    }

    #[test]
    fn no_free_cpu_waits_then_times_out() {
        let p = pod(json!({"phase": "Pending"}));
        let e = event("FailedScheduling", "0/3 nodes are available: 3 Insufficient cpu.", "2026-11-21T10:00:02Z");
        let early = observe_pod(&handle(Kind::Notebook), &p, &[&e], at("2026-11-21T10:01:00Z"), TIMEOUT);
        assert!(matches!(early, Observed::Pending { message } if message.contains("Insufficient cpu")));
        let late = observe_pod(&handle(Kind::Notebook), &p, &[&e], at("2026-11-21T10:11:00Z"), TIMEOUT);
        assert!(matches!(late, Observed::Failed { reason } if reason.starts_with("did not start within 600 s")));
    }

    #[test]
    fn ready_desktop_runs_behind_its_service() {
        let p = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "session", "image": "i", "imageID": "", "ready": true, "restartCount": 0}]}));
        let h = handle(Kind::Desktop);
        let seen = observe_pod(&h, &p, &[], at("2026-11-21T10:00:06Z"), TIMEOUT);
        assert_eq!(seen, Observed::Running { endpoint: format!("{}.sessions.svc:5901", h.workload) });
    }

    #[test]
    fn a_job_without_a_pod_waits_then_fails() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j", "creationTimestamp": "2026-11-21T10:00:00Z"}}))
        .unwrap();
        let early = observe_podless_job(&job, at("2026-11-21T10:00:05Z"), TIMEOUT);
        assert!(matches!(early, Observed::Pending { .. }));
        let late = observe_podless_job(&job, at("2026-11-21T10:20:00Z"), TIMEOUT);
        assert!(matches!(late, Observed::Failed { reason } if reason.contains("no pod")));
        let failed: Job = serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "status": {"conditions": [{"type": "Failed", "status": "True", "message": "exceeded quota"}]}}))
        .unwrap();
        let seen = observe_podless_job(&failed, at("2026-11-21T10:00:05Z"), TIMEOUT);
        assert_eq!(seen, Observed::Exited { exit_code: None, message: "exceeded quota".into() });
    }

    #[test]
    fn finished_job_exits_with_its_code() {
        let p = pod(json!({"phase": "Failed", "containerStatuses": [{
            "name": "session", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}));
        let seen = observe_pod(&handle(Kind::Job), &p, &[], at("2026-11-21T10:00:06Z"), TIMEOUT);
        assert_eq!(seen, Observed::Exited { exit_code: Some(3), message: "Error".into() });
    }
}
