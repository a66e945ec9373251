//! The runtime: what really runs sessions. One trait, several engines chosen by
//! configuration: `local` (processes on this machine), `kubernetes` (pods), and `fake`
//! (nothing runs: tests and benchmarks of daas itself).
//!
//! The runtime knows nothing of users, quotas or Postgres: daas resolves everything at
//! launch into a `LaunchSpec`, stores the `Handle` the runtime returns in
//! `sessions.runtime_handle`, and the reconciler compares what Postgres believes with what
//! `list` and `observe` report.

pub mod fake;
pub mod kube;
pub mod local;
pub mod slurm;
pub mod vnc;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The label (local: a file; kubernetes: a label) carrying the session id.
pub const SESSION_LABEL: &str = "daas.io/session-id";

/// What a session is: a remote desktop (VNC), a Jupyter notebook, a batch job, or a web
/// app (a browser tool such as the reconstruction studio: served over HTTP behind the
/// notebook proxy on the session's own origin, with its base URL, but with none of
/// Jupyter's assumptions: no token, and guests may look).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Desktop,
    Notebook,
    Job,
    WebApp,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Desktop => "desktop",
            Kind::Notebook => "notebook",
            Kind::Job => "job",
            Kind::WebApp => "webapp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "desktop" => Some(Kind::Desktop),
            "notebook" => Some(Kind::Notebook),
            "job" => Some(Kind::Job),
            "webapp" => Some(Kind::WebApp),
            _ => None,
        }
    }
}

/// `sessions.kind` as stored: refused when it names no kind.
impl TryFrom<String> for Kind {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        Kind::parse(&value).ok_or_else(|| format!("unknown session kind {value:?}"))
    }
}

/// Where every runtime has a job write its results, relative to the owner's home.
pub fn job_output(id: Uuid) -> String {
    format!("jobs/{id}")
}

/// Everything a runtime needs to start a session, resolved from Postgres at launch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub session_id: Uuid,
    pub kind: Kind,
    /// The owner's username (for the home folder / volume and the pod's labels).
    pub owner: String,
    /// The owner's host uid, also their gid: every process of the session runs as it
    /// and every file it creates belongs to it (never daas's uid, never root).
    pub uid: u32,
    pub image: ImageSpec,
    pub resources: Resources,
    /// The proposal's user office identifier and the experiment's code, e.g. for sub-paths.
    pub proposal: String,
    pub experiment: String,
    /// The experiment's folder relative to the data root, from `DAAS_EXPERIMENT_STORAGE`
    /// (e.g. `BL11/20180101/S0011`), which every dataset of the experiment lies in.
    pub experiment_folder: String,
    /// Datasets mounted read-only.
    pub datasets: Vec<DatasetMount>,
    /// The VNC password (desktop) or the Jupyter token (notebook); daas's secret.
    pub secret: String,
    /// The base URL path a notebook serves under, e.g. `/` or `/sessions/{id}/`.
    pub base_url: String,
    /// Job parameters, validated against the image's schema.
    pub parameters: Option<serde_json::Value>,
    /// When the session's lifetime ends (a batch system's time limit is set past it).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<time::OffsetDateTime>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageSpec {
    pub name: String,
    /// OCI reference for Kubernetes.
    pub reference: String,
    /// What the local runtime runs (`images.local_command`), e.g. `{"argv": [...]}`.
    pub local_command: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_millis: i32,
    pub memory_mib: i32,
    pub gpus: i32,
    pub gpu_type: Option<String>,
    pub disk_gib: i32,
    /// Kubernetes only.
    pub node_selector: BTreeMap<String, String>,
    /// Kubernetes only: tolerations as Kubernetes JSON objects.
    pub tolerations: Vec<serde_json::Value>,
    /// Slurm only: where the flavour's jobs go.
    #[serde(default)]
    pub slurm: SlurmPlacement,
}

/// Where a flavour's sessions run on a Slurm cluster (`sbatch --partition`, `--account`,
/// `--qos`, `--constraint`); unset: the cluster's defaults. The GPU type is
/// `Resources::gpu_type` (`--gres=gpu:<type>:<n>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmPlacement {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Node features the job needs, in Slurm's syntax (`v100&ib`).
    pub constraint: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetMount {
    pub name: String,
    /// Relative to the data root (or a URI, which runtimes may refuse).
    pub location: String,
}

/// The runtime's resolved names and ids for one session (pids and start times, pod and
/// service names...), stored as JSON in `sessions.runtime_handle` so a restart of daas
/// finds everything again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Handle(pub serde_json::Value);

/// What a runtime sees of a session now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Observed {
    /// Not ready yet; the message says what is happening ("pulling image").
    Pending { message: String },
    /// Waiting in a batch system's queue for its resources; the message says why ("waiting
    /// for resources"). Not yet started: the startup timeout counts from when it leaves.
    Queued { message: String },
    /// Starting, and telling how far it is (a web app loading its data writes
    /// `$DAAS_PROGRESS_FILE`): not stuck, so the startup timeout counts from its latest
    /// report.
    Loading { message: String },
    /// Ready: the proxy reaches it at `endpoint` (`host:port`).
    Running { endpoint: String },
    /// Ended by itself (a job finished, a process exited).
    Exited { exit_code: Option<i32>, message: String },
    /// Cannot succeed; the reason is for the user ("no node with a free GPU").
    Failed { reason: String },
    /// Ended by the batch system at its time limit (which daas sets past the session's
    /// lifetime, so this is a lifetime end daas did not make itself, e.g. while it was down).
    Expired { message: String },
    /// Nothing of it exists any more.
    Gone,
}

/// What a session's node tells daas (the Slurm runtime's callback,
/// `POST /api/v1/runtime/sessions/{id}/report`, authenticated by the session's node secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum NodeReport {
    /// The session's relay listens at `host:port` (bound by the node itself, port 0).
    Listening { host: String, port: u16 },
    /// The batch system warned that the session reaches its time limit in `seconds`.
    TimeLimit { seconds: u64 },
}

/// A session the runtime really runs, as found by its labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub session_id: Uuid,
    pub handle: Handle,
}

pub type RuntimeResult<T> = anyhow::Result<T>;

#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// `local`, `kubernetes` or `fake`, as stored in `sessions.runtime`.
    fn name(&self) -> &'static str;
    /// Starts the session; returns as soon as it is started, not when it is ready.
    /// Launching an id that already runs adopts it (idempotent).
    async fn launch(&self, spec: &LaunchSpec) -> RuntimeResult<Handle>;
    /// Its state now, with a progress message.
    async fn observe(&self, session_id: Uuid, handle: &Handle) -> RuntimeResult<Observed>;
    /// Stops it and removes what it leaves behind (except the user's home). Stopping what
    /// is already gone succeeds.
    async fn stop(&self, session_id: Uuid, handle: &Handle) -> RuntimeResult<()>;
    /// Every session this runtime runs, found by label, whether daas knows it or not.
    async fn list(&self) -> RuntimeResult<Vec<Found>>;
    /// The last `lines` lines of its output.
    async fn logs(&self, session_id: Uuid, handle: &Handle, lines: usize) -> RuntimeResult<String>;
    /// The folder holding users' homes where daas itself can read them (a job's outputs are
    /// `<home>/jobs/<id>`, `job_output`); `None` where homes live out of daas's reach (a
    /// Kubernetes volume).
    fn homes(&self) -> Option<&std::path::Path> {
        None
    }
    /// Whether this runtime can place a flavour's sessions where `placement` says (the
    /// Slurm runtime asks the cluster whether the partition exists); `Err((field,
    /// message))` says what is wrong. A runtime that cannot ask now lets it pass.
    async fn check_placement(&self, _placement: &SlurmPlacement) -> Result<(), (&'static str, String)> {
        Ok(())
    }
    /// Takes a report from a session's node, checking `secret`; `Ok(false)` when it is not
    /// authentic or this runtime takes none (only the Slurm runtime does).
    async fn report(&self, _session_id: Uuid, _secret: &str, _report: &NodeReport) -> RuntimeResult<bool> {
        Ok(false)
    }
    /// Makes sure the runtime lets the session run until `expires_at` (its lifetime, maybe
    /// extended since the launch): the Slurm runtime raises a job's time limit. Called for
    /// every observed session each reconcile pass; a no-op for the others.
    async fn keep_until(
        &self,
        _session_id: Uuid,
        _handle: &Handle,
        _expires_at: time::OffsetDateTime,
    ) -> RuntimeResult<()> {
        Ok(())
    }
    /// Replaces the running session's secret by `secret`: the VNC password its server
    /// checks, or what a notebook's server checks daas's token against. A member who leaves
    /// a session could have read the old one inside it. `Ok(false)` where this runtime
    /// cannot (the session keeps its secret until it stops).
    async fn rotate_secret(
        &self,
        _session_id: Uuid,
        _handle: &Handle,
        _kind: Kind,
        _secret: &str,
    ) -> RuntimeResult<bool> {
        Ok(false)
    }
}

/// What a notebook's Jupyter server checks daas's token against (`/session/token.sha256`
/// in the local runtimes' sandbox, a key of the session's Secret on Kubernetes): the
/// token's SHA-256 in hex, never the token itself, so no code in the session (its kernels
/// run as the same user as the server) can learn a secret that opens it from outside.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}
