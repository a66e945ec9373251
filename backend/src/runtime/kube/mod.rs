//! The `kubernetes` runtime: a Pod (or a batch Job) per session with its Secret, Service,
//! NetworkPolicy and the owner's home volume, in one namespace. Creates are idempotent and
//! retried; status comes from one shared watch (see `watch`).

pub mod args;
pub mod manifests;
pub mod names;
pub mod status;
pub mod watch;

use std::fmt::Debug;
use std::future::Future;

use anyhow::Context;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::chrono::Utc;
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::OnceCell;
use uuid::Uuid;

pub use args::{DataSource, KubeArgs};
pub use names::KubeHandle;

use self::manifests::{owner_reference, Workload, HANDLE_ANNOTATION, KIND_LABEL};
use self::watch::Watch;
use super::{Found, Handle, Kind, LaunchSpec, Observed, Runtime, RuntimeResult, SESSION_LABEL};

/// The Kubernetes version daas is built for (k8s-openapi's `v1_30`) and whose schemas
/// `make test` validates the manifests and the chart against.
pub const KUBERNETES_VERSION: &str = "1.30.0";

/// Every call this runtime makes, as RBAC rules `(apiGroup, resource, verbs)`: the chart's
/// Role grants exactly these (a test compares the two).
pub const RBAC_RULES: &[(&str, &str, &[&str])] = &[
    ("", "events", &["list", "watch"]),
    ("", "persistentvolumeclaims", &["create"]),
    ("", "pods", &["create", "delete", "get", "list", "watch"]),
    ("", "pods/log", &["get"]),
    ("", "secrets", &["create", "delete", "get", "patch"]),
    ("", "services", &["create", "delete", "get"]),
    ("batch", "jobs", &["create", "delete", "get"]),
    ("networking.k8s.io", "networkpolicies", &["create", "delete", "get"]),
];

/// A failed call to the API server, after its retries.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("{what}: the API server answered {code}: {message}")]
    Status { what: String, code: u16, message: String },
    #[error("{what}: {message}")]
    Other { what: String, message: String },
}

impl CallError {
    fn code(&self) -> Option<u16> {
        match self {
            CallError::Status { code, .. } => Some(*code),
            CallError::Other { .. } => None,
        }
    }
}

/// Sessions as pods on a Kubernetes cluster.
pub struct KubeRuntime {
    client: Client,
    args: KubeArgs,
    /// Started on first use, so that a runtime that only launches never watches.
    watch: OnceCell<Watch>,
}

impl KubeRuntime {
    /// A runtime over `client` (any `tower` service: a real cluster or a test's mock).
    pub fn new(client: Client, args: KubeArgs) -> Self {
        KubeRuntime { client, args, watch: OnceCell::new() }
    }

    /// Connects as configured (a kubeconfig, or the pod's service account) and checks that
    /// the session namespace can be watched, failing with one clear line otherwise.
    pub async fn from_args(args: &KubeArgs) -> anyhow::Result<Self> {
        args.validate()?;
        let options = KubeConfigOptions { context: args.kube_context.clone(), ..Default::default() };
        let config = match &args.kube_config {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(kubeconfig, &options).await?
            }
            None if args.kube_context.is_some() => Config::from_kubeconfig(&options).await?,
            None => Config::infer().await.context(
                "no Kubernetes configuration: not running in a cluster and no kubeconfig (set --kube-config)",
            )?,
        };
        let runtime = Self::new(Client::try_from(config)?, args.clone());
        runtime.watch().await.with_context(|| format!("cannot watch pods in namespace {}", args.kube_namespace))?;
        Ok(runtime)
    }

    async fn watch(&self) -> anyhow::Result<&Watch> {
        let watch =
            self.watch.get_or_init(|| async { Watch::start(self.client.clone(), &self.args.kube_namespace) }).await;
        watch.ready(self.args.request_timeout() * 3).await?;
        Ok(watch)
    }

    /// The names in a handle, refusing one from another namespace (daas's Role is granted
    /// in its session namespace only).
    fn names(&self, handle: &Handle) -> anyhow::Result<KubeHandle> {
        let names = KubeHandle::from_handle(handle)?;
        if names.namespace != self.args.kube_namespace {
            anyhow::bail!(
                "the session runs in namespace {}, not in the configured {}",
                names.namespace,
                self.args.kube_namespace
            );
        }
        Ok(names)
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.args.kube_namespace)
    }

    /// One call with a timeout, retried with exponential backoff on a timeout, a transport
    /// error, a 429 or a 5xx; other answers (404, 409...) come back at once.
    async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, CallError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = kube::Result<T>>,
    {
        let mut delay = std::time::Duration::from_millis(self.args.kube_backoff_ms);
        let mut attempt = 1;
        loop {
            let error = match tokio::time::timeout(self.args.request_timeout(), f()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(kube::Error::Api(e))) => {
                    let error = CallError::Status { what: what.into(), code: e.code, message: e.message };
                    if !(e.code == 429 || e.code >= 500) {
                        return Err(error);
                    }
                    error
                }
                Ok(Err(e)) => CallError::Other { what: what.into(), message: e.to_string() },
                Err(_) => CallError::Other {
                    what: what.into(),
                    message: format!("no answer within {} s", self.args.kube_request_timeout_seconds),
                },
            };
            if attempt >= self.args.kube_attempts {
                return Err(error);
            }
            tracing::warn!(%error, attempt, "kubernetes call failed; retrying");
            tokio::time::sleep(delay).await;
            delay *= 2;
            attempt += 1;
        }
    }

    async fn create<K>(&self, obj: &K) -> Result<K, CallError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        let api = self.api::<K>();
        let what = format!("creating {} {}", K::kind(&()), obj.name_any());
        let params = PostParams::default();
        self.call(&what, || api.create(&params, obj)).await
    }

    async fn get<K>(&self, name: &str) -> Result<K, CallError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        let api = self.api::<K>();
        self.call(&format!("reading {} {name}", K::kind(&())), || api.get(name)).await
    }

    /// Deletes in the background (the garbage collector removes what it owns); what is
    /// already gone counts as deleted.
    async fn delete<K>(&self, name: &str) -> Result<(), CallError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        let api = self.api::<K>();
        let what = format!("deleting {} {name}", K::kind(&()));
        let params = DeleteParams::background();
        match self.call(&what, || api.delete(name, &params)).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the session's Pod or Job, or adopts the one a previous attempt created;
    /// returns its uid for the owner references.
    async fn create_workload<K>(&self, obj: &K, session_id: Uuid) -> anyhow::Result<String>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        let existing = match self.create(obj).await {
            Ok(created) => created,
            Err(e) if e.code() == Some(409) => self.get::<K>(&obj.name_any()).await?,
            Err(e) => return Err(e.into()),
        };
        let ours = existing.labels().get(SESSION_LABEL) == Some(&session_id.to_string());
        if !ours || existing.meta().deletion_timestamp.is_some() {
            anyhow::bail!("{} {} exists and is not this session's (or is being deleted)", K::kind(&()), obj.name_any());
        }
        existing.uid().context("the API server gave no uid")
    }

    /// Creates an object the workload owns; on a conflict, adopts it when the same
    /// workload owns it, and replaces it when it is stale (left by an older workload).
    async fn create_owned<K>(&self, obj: &K, owner_uid: &str) -> anyhow::Result<()>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        match self.create(obj).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Some(409) => {}
            Err(e) => return Err(e.into()),
        }
        let name = obj.name_any();
        let existing = self.get::<K>(&name).await?;
        if existing.owner_references().iter().any(|o| o.uid == owner_uid) {
            return Ok(());
        }
        tracing::info!(kind = K::kind(&()).as_ref(), name, "replacing a stale object");
        self.delete::<K>(&name).await?;
        self.create(obj).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Runtime for KubeRuntime {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    #[tracing::instrument(skip_all, fields(session.id = %spec.session_id))]
    async fn launch(&self, spec: &LaunchSpec) -> RuntimeResult<Handle> {
        let names = KubeHandle::new(&self.args.kube_namespace, spec.session_id, spec.kind, &spec.owner);
        // Everything is built (and checked) before the first call; the owner's uid is
        // known only once the workload exists.
        let unowned = owner_reference(spec.kind, &names.workload, "");
        let objects = manifests::build(spec, &self.args, &names, &unowned)?;

        match self.create(&objects.home_claim).await {
            Ok(_) => {}
            // The home of an earlier session: it is kept and reused.
            Err(e) if e.code() == Some(409) => {}
            Err(e) => return Err(e.into()),
        }
        let uid = match &objects.workload {
            Workload::Pod(pod) => self.create_workload::<Pod>(pod, spec.session_id).await?,
            Workload::Job(job) => self.create_workload::<Job>(job, spec.session_id).await?,
        };
        let owner = owner_reference(spec.kind, &names.workload, &uid);
        let dependents = async {
            if let Some(mut secret) = objects.secret {
                secret.metadata.owner_references = Some(vec![owner.clone()]);
                self.create_owned(&secret, &uid).await?;
            }
            if let Some(mut service) = objects.service {
                service.metadata.owner_references = Some(vec![owner.clone()]);
                self.create_owned(&service, &uid).await?;
            }
            let mut policy = objects.network_policy;
            policy.metadata.owner_references = Some(vec![owner]);
            self.create_owned(&policy, &uid).await
        };
        if let Err(error) = dependents.await {
            // A session without its secret or its policy must not run: remove the workload
            // (the garbage collector takes what it already owns).
            let removed = match spec.kind {
                Kind::Job => self.delete::<Job>(&names.workload).await,
                _ => self.delete::<Pod>(&names.workload).await,
            };
            if let Err(e) = removed {
                tracing::warn!(error = %e, "could not remove the workload of a failed launch");
            }
            return Err(error);
        }
        Ok(names.to_handle())
    }

    async fn observe(&self, session_id: Uuid, handle: &Handle) -> RuntimeResult<Observed> {
        let names = self.names(handle)?;
        let watch = self.watch().await?;
        let timeout = self.args.start_timeout();
        if let Some(pod) = watch.pods_of(session_id).first() {
            let events = watch.events_of(&pod.name_any());
            let events: Vec<_> = events.iter().map(|e| e.as_ref()).collect();
            return Ok(status::observe_pod(&names, pod, &events, Utc::now(), timeout));
        }
        // The watch may lag a pod created a moment ago: ask the API server once.
        let found = match names.kind {
            Kind::Job => self.get::<Job>(&names.workload).await.map(|job| Err(Box::new(job))),
            _ => self.get::<Pod>(&names.workload).await.map(|pod| Ok(Box::new(pod))),
        };
        Ok(match found {
            Ok(Ok(pod)) => status::observe_pod(&names, &pod, &[], Utc::now(), timeout),
            Ok(Err(job)) => status::observe_podless_job(&job, Utc::now(), timeout),
            Err(e) if e.code() == Some(404) => Observed::Gone,
            Err(e) => return Err(e.into()),
        })
    }

    #[tracing::instrument(skip_all, fields(session.id = %session_id))]
    async fn stop(&self, session_id: Uuid, handle: &Handle) -> RuntimeResult<()> {
        let names = self.names(handle)?;
        tracing::info!(session.id = %session_id, workload = names.workload, "deleting the session's workload");
        match names.kind {
            Kind::Job => self.delete::<Job>(&names.workload).await?,
            _ => self.delete::<Pod>(&names.workload).await?,
        }
        Ok(())
    }

    /// A notebook's token hash is patched into its Secret; the kubelet brings the mounted
    /// file up to date at its next sync (about a minute). A desktop's VNC server took its
    /// password from the environment at start, so it keeps it.
    async fn rotate_secret(&self, _session_id: Uuid, handle: &Handle, kind: Kind, secret: &str) -> RuntimeResult<bool> {
        let names = self.names(handle)?;
        let (Kind::Notebook, Some(name)) = (kind, &names.secret) else { return Ok(false) };
        let api = self.api::<k8s_openapi::api::core::v1::Secret>();
        let patch = kube::api::Patch::Merge(serde_json::json!({"stringData": manifests::secret_data(kind, secret)}));
        let params = kube::api::PatchParams::default();
        self.call(&format!("patching Secret {name}"), || api.patch(name, &params, &patch)).await?;
        Ok(true)
    }

    async fn list(&self) -> RuntimeResult<Vec<Found>> {
        let watch = self.watch().await?;
        let mut found: Vec<Found> = Vec::new();
        for pod in watch.pods() {
            let Some(session_id) = pod.labels().get(SESSION_LABEL).and_then(|s| s.parse::<Uuid>().ok()) else {
                continue;
            };
            if found.iter().any(|f| f.session_id == session_id) {
                continue;
            }
            let from_annotation =
                pod.annotations().get(HANDLE_ANNOTATION).and_then(|a| serde_json::from_str::<KubeHandle>(a).ok());
            let names = match from_annotation {
                Some(names) => names,
                // Not one daas made as it does now: its names follow from the session id.
                None => {
                    let kind = pod.labels().get(KIND_LABEL).and_then(|k| Kind::parse(k)).unwrap_or(Kind::Desktop);
                    KubeHandle::new(&self.args.kube_namespace, session_id, kind, "")
                }
            };
            found.push(Found { session_id, handle: names.to_handle() });
        }
        Ok(found)
    }

    async fn logs(&self, session_id: Uuid, handle: &Handle, lines: usize) -> RuntimeResult<String> {
        self.names(handle)?;
        let watch = self.watch().await?;
        let Some(pod) = watch.pods_of(session_id).into_iter().next() else {
            return Ok(String::new());
        };
        let api = self.api::<Pod>();
        let params = LogParams {
            container: Some("session".into()),
            tail_lines: Some(lines.try_into().unwrap_or(i64::MAX)),
            ..Default::default()
        };
        let name = pod.name_any();
        Ok(self.call(&format!("reading the log of pod {name}"), || api.logs(&name, &params)).await?)
    }
}
