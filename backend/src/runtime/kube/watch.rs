//! One shared watch per namespace (kube-runtime reflectors): the session pods and the
//! Events about pods, kept in memory so `observe` and `list` read a store instead of
//! polling the API server.

use std::future::ready;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::manifests::SESSION_PODS;
use crate::runtime::SESSION_LABEL;

/// The stores of the session pods and of the pod Events of one namespace.
pub struct Watch {
    pods: Store<Pod>,
    events: Store<Event>,
    tasks: Vec<JoinHandle<()>>,
}

impl Watch {
    /// Starts both reflectors; they reconnect with backoff until the `Watch` is dropped.
    pub fn start(client: Client, namespace: &str) -> Self {
        let (pods, pod_writer) = reflector::store();
        let (events, event_writer) = reflector::store();
        let pod_stream =
            watcher(Api::<Pod>::namespaced(client.clone(), namespace), watcher::Config::default().labels(SESSION_PODS));
        let event_stream = watcher(
            Api::<Event>::namespaced(client, namespace),
            watcher::Config::default().fields("involvedObject.kind=Pod"),
        );
        let tasks = vec![
            tokio::spawn(reflector::reflector(pod_writer, pod_stream.default_backoff()).for_each(|r| {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "watching session pods");
                }
                ready(())
            })),
            tokio::spawn(reflector::reflector(event_writer, event_stream.default_backoff()).for_each(|r| {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "watching pod events");
                }
                ready(())
            })),
        ];
        Watch { pods, events, tasks }
    }

    /// Waits for the first complete listing of both, or fails after `timeout`.
    pub async fn ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let both = async {
            self.pods.wait_until_ready().await?;
            self.events.wait_until_ready().await
        };
        match tokio::time::timeout(timeout, both).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => anyhow::bail!("the watch of session pods stopped: {e}"),
            Err(_) => anyhow::bail!(
                "could not list session pods and events within {} s (API server reachable? RBAC?)",
                timeout.as_secs()
            ),
        }
    }

    /// Every session pod the cluster has.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.pods.state()
    }

    /// The pods of one session (one, or none yet; a Job's retried pods would be more).
    pub fn pods_of(&self, session_id: Uuid) -> Vec<Arc<Pod>> {
        let id = session_id.to_string();
        let mut pods: Vec<_> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.labels.as_ref().and_then(|l| l.get(SESSION_LABEL)) == Some(&id))
            .collect();
        // The newest first.
        pods.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone()));
        pods
    }

    /// The Events about one pod.
    pub fn events_of(&self, pod: &str) -> Vec<Arc<Event>> {
        self.events.state().into_iter().filter(|e| e.involved_object.name.as_deref() == Some(pod)).collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
