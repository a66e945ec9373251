//! The Slurm runtime: each session is one Slurm batch job. daas submits it with `sbatch`
//! (the commands a facility's login nodes have; their options stay stable across Slurm
//! versions, where slurmrestd's API changes version with Slurm), watches all of its jobs with
//! one `squeue` per reconcile pass, and ends one with `scancel`.
//!
//! On the node the job runs `daas slurm-node <session folder>` ([`node`]), which starts the
//! session exactly as the local runtime does (the same sandbox, the same commands; the
//! session's uid, no network), binds a free port itself, relays that port to the session's
//! socket once a caller has sent the session's relay key, and reports the port to daas
//! over an authenticated callback (`POST /api/v1/runtime/sessions/{id}/report`, the
//! session's node secret as a bearer token). Both secrets are in the session's folder
//! (`launch.json`, daas's alone), never in a command line, a URL or the job's environment.
//!
//! The folders (sessions, homes, data, the Python environment, daas's tools) are shared:
//! the same paths on daas's machine and on every node.
//!
//! Errors policy: only Slurm's "Invalid job id" means a job is gone. Any other failure of a
//! command (the controller down, a timeout) is an error: the reconciler leaves every state
//! as it was and tries again at its next pass.

pub mod node;
pub mod queue;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use self::queue::{Ended, Job, Phase};
use super::local::{exit_message, set_mode, tail, write, LocalConfig};
use super::{
    Found, Handle, Kind, LaunchSpec, NodeReport, Observed, Runtime, RuntimeResult, SlurmPlacement, SESSION_LABEL,
};

/// The Slurm runtime's settings (`--runtime slurm`).
#[derive(clap::Args, Debug, Clone)]
pub struct SlurmArgs {
    /// Slurm runtime: daas's URL as the compute nodes reach it, for their reports
    /// (default: the public URL).
    #[arg(long, env = "DAAS_SLURM_CALLBACK_URL")]
    pub slurm_callback_url: Option<url::Url>,
    /// Slurm runtime: the `daas` program as the nodes see it (default: this one, which
    /// must then be on a path the nodes share).
    #[arg(long, env = "DAAS_SLURM_DAAS_PATH")]
    pub slurm_daas_path: Option<PathBuf>,
}

/// Where the Slurm runtime keeps things and what it runs with.
#[derive(Clone, Debug)]
pub struct SlurmConfig {
    /// The shared folders (the same paths on the nodes) and the stop grace.
    pub folders: LocalConfig,
    /// daas's URL as the nodes reach it.
    pub callback_url: url::Url,
    /// The `daas` program on the nodes.
    pub daas_path: PathBuf,
    /// How long before its time limit Slurm warns a session (`--signal`), at least 60 s.
    pub warning: Duration,
}

/// What `sessions.runtime_handle` holds for a Slurm session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlurmHandle {
    pub job_id: u64,
    pub kind: Kind,
    pub base_url: String,
}

/// `launch.json` in the session's folder: everything the node program needs, written by
/// daas before the submission, readable by daas (root) alone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeLaunch {
    pub spec: LaunchSpec,
    /// The shared folders and the stop grace (the node finds its own GPU devices).
    pub folders: LocalConfig,
    /// Where the node reports (`.../api/v1/runtime/sessions/{id}/report`).
    pub report_url: String,
    /// The bearer token of its reports.
    pub node_secret: String,
    /// The line a connection to the relay must start with.
    pub relay_key: String,
    /// What the time-limit warning (`--signal=B:USR1@seconds`) says is left.
    pub warning_seconds: u64,
}

/// The launch description's name in the session's folder.
pub const LAUNCH: &str = "launch.json";
/// Where daas writes the `host:port` a node reported.
const ENDPOINT: &str = "endpoint";
/// How old a listing of the queue may be for `observe`: every session of one reconcile
/// pass reads the listing `list` made at its start; launches watched closely share one.
const FRESH: Duration = Duration::from_secs(2);
/// The time limit is set this far past the session's end: daas stops it at its lifetime,
/// Slurm only when daas could not.
const MARGIN_SECONDS: u64 = 120;
/// How long a stop waits for Slurm to end the job after `scancel`, beyond the grace.
const END_WAIT: Duration = Duration::from_secs(60);

/// The `slurm` engine: sessions as batch jobs.
pub struct SlurmRuntime {
    config: SlurmConfig,
    /// The last listing of daas's jobs, and when it was taken.
    queue: tokio::sync::Mutex<Option<(Instant, Arc<Vec<Job>>)>>,
    /// Endpoints that answered once: not probed again.
    ready: std::sync::Mutex<HashMap<Uuid, String>>,
}

impl SlurmRuntime {
    /// Checks that the Slurm commands are there and makes daas's folders.
    pub fn new(config: SlurmConfig) -> anyhow::Result<Self> {
        for program in ["sbatch", "squeue", "scancel", "scontrol", "sinfo"] {
            super::local::which(program)
                .with_context(|| format!("the Slurm runtime needs `{program}` (Debian: slurm-client)"))?;
        }
        let folders = config.folders.clone().prepare()?;
        Ok(Self { config: SlurmConfig { folders, ..config }, queue: Default::default(), ready: Default::default() })
    }

    fn dir(&self, id: Uuid) -> PathBuf {
        self.config.folders.sessions_dir.join(id.to_string())
    }

    fn log_path(&self, id: Uuid) -> PathBuf {
        self.config.folders.sessions_dir.join("logs").join(format!("{id}.log"))
    }

    /// daas's jobs, from a listing at most `max_age` old (one `squeue` for every caller
    /// meanwhile: callers wait for the one under way rather than run their own).
    async fn jobs(&self, max_age: Duration) -> anyhow::Result<Arc<Vec<Job>>> {
        let mut queue = self.queue.lock().await;
        if let Some((_, jobs)) = queue.as_ref().filter(|(taken, _)| taken.elapsed() <= max_age) {
            return Ok(jobs.clone());
        }
        let uid = rustix::process::getuid().as_raw().to_string();
        let format = format!("--format={}", queue::FORMAT);
        let text = slurm("squeue", &["--noheader", "--states=all", "--user", &uid, &format]).await?;
        let jobs = Arc::new(queue::parse(&text));
        metrics::counter!("daas_slurm_queue_listings_total").increment(1);
        *queue = Some((Instant::now(), jobs.clone()));
        Ok(jobs)
    }

    /// A job the listing lacks (submitted after it, or purged), from `scontrol`:
    /// `(state, reason, nodes)`; `None` when Slurm no longer knows it.
    async fn job_info(&self, job_id: u64) -> anyhow::Result<Option<(String, String, String)>> {
        let id = job_id.to_string();
        let output = command("scontrol", &["--oneliner", "show", "job", &id]).await?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if stderr.contains("Invalid job id") {
                return Ok(None);
            }
            bail!("scontrol show job {id}: {}", stderr.trim());
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let field = |name: &str| {
            text.split_whitespace().find_map(|f| f.strip_prefix(name)?.strip_prefix('=')).unwrap_or("").to_owned()
        };
        let nodes = Some(field("NodeList")).filter(|n| n != "(null)").unwrap_or_default();
        Ok(Some((field("JobState"), field("Reason"), nodes)))
    }

    /// The session's launch description, if its folder holds one.
    fn launch_of(&self, id: Uuid) -> Option<NodeLaunch> {
        serde_json::from_slice(&std::fs::read(self.dir(id).join(LAUNCH)).ok()?).ok()
    }

    /// The exit code the session's wrapper recorded on the node.
    fn exit_code(&self, id: Uuid) -> Option<i32> {
        std::fs::read_to_string(self.dir(id).join("exit-code")).ok()?.trim().parse().ok()
    }

    /// A desktop or notebook whose job runs: running once its node reported its port and
    /// the session answers there through the relay.
    async fn answering(&self, id: Uuid, handle: &SlurmHandle, nodes: &str) -> Observed {
        if let Some(endpoint) = self.ready.lock().expect("not poisoned").get(&id).cloned() {
            return Observed::Running { endpoint };
        }
        let reported = std::fs::read_to_string(self.dir(id).join(ENDPOINT)).ok();
        let (Some(address), Some(launch)) = (reported, self.launch_of(id)) else {
            return Observed::Pending { message: format!("started on {nodes}; waiting for it to report its port") };
        };
        let endpoint = format!("relay:{}@{}", launch.relay_key, address.trim());
        let connect = crate::proxy::upstream::connect(&endpoint);
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
            if super::local::answers(handle.kind, &handle.base_url, stream).await {
                self.ready.lock().expect("not poisoned").insert(id, endpoint.clone());
                return Observed::Running { endpoint };
            }
        }
        let what = if handle.kind == Kind::Desktop { "desktop" } else { "notebook server" };
        Observed::Pending { message: format!("waiting for the {what} to answer on {nodes}") }
    }

    /// The batch script: the node program, nothing else (no shell expansion of paths).
    fn script(&self, dir: &Path) -> String {
        format!(
            "#!/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH\nexec {} slurm-node {}\n",
            quote(&self.config.daas_path.display().to_string()),
            quote(&dir.display().to_string())
        )
    }

    /// `sbatch`'s options for a session.
    fn sbatch_args(&self, spec: &LaunchSpec) -> Vec<String> {
        let id = spec.session_id;
        let r = &spec.resources;
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name=daas-{id}"),
            format!("--comment={}{id}", queue::COMMENT),
            format!("--output={}", self.log_path(id).display()),
            "--open-mode=append".into(),
            format!("--chdir={}", self.dir(id).display()),
            // Not daas's environment (its database URL): the node program sets its own.
            "--export=NONE".into(),
            // A failed node fails the session (which says so) rather than rerunning it
            // elsewhere unseen.
            "--no-requeue".into(),
            "--nodes=1".into(),
            "--ntasks=1".into(),
            format!("--cpus-per-task={}", (r.cpu_millis.max(1) + 999) / 1000),
            format!("--mem={}M", r.memory_mib.max(1)),
        ];
        if r.gpus > 0 {
            args.push(match &r.gpu_type {
                Some(t) => format!("--gres=gpu:{t}:{}", r.gpus),
                None => format!("--gres=gpu:{}", r.gpus),
            });
        }
        let placement = [
            ("partition", &r.slurm.partition),
            ("account", &r.slurm.account),
            ("qos", &r.slurm.qos),
            ("constraint", &r.slurm.constraint),
        ];
        for (option, value) in placement {
            if let Some(value) = value {
                args.push(format!("--{option}={value}"));
            }
        }
        if let Some(expires_at) = spec.expires_at {
            let left = (expires_at - time::OffsetDateTime::now_utc()).whole_seconds().max(0) as u64;
            args.push(format!("--time={}", (left + MARGIN_SECONDS).div_ceil(60)));
            args.push(format!("--signal=B:USR1@{}", self.config.warning.as_secs().clamp(60, 65_535)));
        }
        args
    }

    /// Writes the session's folder: its label, then its launch description (with fresh
    /// secrets). Anything an earlier try left is removed first.
    fn write_folder(&self, spec: &LaunchSpec) -> anyhow::Result<PathBuf> {
        let id = spec.session_id;
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", dir.display()))
            }
            _ => {}
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        set_mode(&dir, 0o700)?;
        write(&dir.join(SESSION_LABEL.replace('/', "_")), id.to_string())?;
        let mut report_url = self.config.callback_url.clone();
        report_url.set_path(&format!("/api/v1/runtime/sessions/{id}/report"));
        let launch = NodeLaunch {
            spec: spec.clone(),
            folders: self.config.folders.clone(),
            report_url: report_url.to_string(),
            node_secret: Alphanumeric.sample_string(&mut rand::rng(), 40),
            relay_key: Alphanumeric.sample_string(&mut rand::rng(), 40),
            warning_seconds: self.config.warning.as_secs().clamp(60, 65_535),
        };
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(LAUNCH);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        use std::io::Write;
        file.write_all(&serde_json::to_vec(&launch)?).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(dir)
    }

    async fn submit(&self, spec: &LaunchSpec) -> anyhow::Result<u64> {
        let dir = self.write_folder(spec)?;
        let mut child = tokio::process::Command::new("sbatch")
            .args(self.sbatch_args(spec))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run sbatch")?;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(self.script(&dir).as_bytes()).await.context("cannot give sbatch the job's script")?;
        drop(stdin);
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .context("sbatch did not answer within 60 s")??;
        if !output.status.success() {
            bail!("Slurm refused the job: {}", said(&output.stderr));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout
            .trim()
            .split(';')
            .next()
            .and_then(|id| id.parse().ok())
            .with_context(|| format!("sbatch answered no job id: {stdout:?}"))
    }
}

/// What a Slurm command said on its standard error, without its `sbatch: error: ` prefixes.
fn said(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.split_once(": error: ").map_or(l, |(_, rest)| rest).trim())
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("; ")
}

/// Runs a Slurm command (at most 30 s: a controller that does not answer is an error).
async fn command(program: &str, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let run = tokio::process::Command::new(program).args(args).stdin(Stdio::null()).kill_on_drop(true).output();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .with_context(|| format!("{program} did not answer within 30 s"))?
        .with_context(|| format!("cannot run {program}"))
}

/// Runs a Slurm command that must succeed; its standard output.
async fn slurm(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = command(program, args).await?;
    if !output.status.success() {
        bail!("{program} failed: {}", said(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A word for `sh`, single-quoted.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn handle_of(value: &Handle) -> anyhow::Result<SlurmHandle> {
    serde_json::from_value(value.0.clone()).context("not a Slurm runtime handle")
}

/// Whether `secret` is the one in `launch` (compared as digests: no early exit on the
/// first differing byte of the secret).
fn authentic(launch: &NodeLaunch, secret: &str) -> bool {
    Sha256::digest(secret.as_bytes()) == Sha256::digest(launch.node_secret.as_bytes())
}

/// A reported host: an IP address or a host name, nothing that could be read as more.
fn plain_host(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
        || (!host.is_empty()
            && host.len() <= 253
            && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
}

#[async_trait::async_trait]
impl Runtime for SlurmRuntime {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn homes(&self) -> Option<&Path> {
        Some(&self.config.folders.homes_dir)
    }

    /// The session's folder is on the filesystem daas shares with the nodes.
    async fn rotate_secret(&self, session_id: Uuid, _handle: &Handle, kind: Kind, secret: &str) -> RuntimeResult<bool> {
        super::local::rotate_secret_in(&self.dir(session_id), kind, secret)?;
        Ok(true)
    }

    async fn launch(&self, spec: &LaunchSpec) -> RuntimeResult<Handle> {
        let id = spec.session_id;
        let handle = |job_id| SlurmHandle { job_id, kind: spec.kind, base_url: spec.base_url.clone() };
        // A submission daas made before it stopped, or a second launch of one id: adopt it.
        let jobs = self.jobs(Duration::ZERO).await?;
        if let Some(job) = jobs.iter().find(|j| j.session == id && queue::active(&j.state)) {
            return Ok(Handle(serde_json::to_value(handle(job.id))?));
        }
        self.ready.lock().expect("not poisoned").remove(&id);
        match self.submit(spec).await {
            Ok(job_id) => {
                tracing::info!(session.id = %id, job_id, "submitted to Slurm");
                metrics::counter!("daas_slurm_submissions_total").increment(1);
                Ok(Handle(serde_json::to_value(handle(job_id))?))
            }
            Err(err) => {
                let _ = std::fs::remove_dir_all(self.dir(id));
                Err(err)
            }
        }
    }

    async fn observe(&self, session_id: Uuid, handle: &Handle) -> RuntimeResult<Observed> {
        let handle = handle_of(handle)?;
        let jobs = self.jobs(FRESH).await?;
        let seen = match jobs.iter().find(|j| j.id == handle.job_id) {
            Some(job) => Some((job.state.clone(), job.reason.clone(), job.nodes.clone())),
            None => self.job_info(handle.job_id).await?,
        };
        let Some((state, reason, nodes)) = seen else {
            // Slurm forgot it (`MinJobAge` after its end): what the node recorded tells.
            return Ok(match self.exit_code(session_id) {
                Some(code) => Observed::Exited {
                    exit_code: Some(code),
                    message: exit_message(Some(code), false, &self.log_path(session_id)),
                },
                None => Observed::Gone,
            });
        };
        Ok(match queue::phase(&state, &reason, &nodes) {
            Phase::Queued(message) => Observed::Queued { message },
            Phase::Preparing(message) => Observed::Pending { message },
            Phase::Running if handle.kind == Kind::Job => Observed::Running { endpoint: String::new() },
            Phase::Running => self.answering(session_id, &handle, &nodes).await,
            Phase::Ending => Observed::Pending { message: format!("Slurm is ending it on {nodes}") },
            Phase::Ended(Ended::Exited) => {
                // The node program exits with its session's code; COMPLETED is 0.
                match self.exit_code(session_id).or((state == "COMPLETED").then_some(0)) {
                    Some(code) => Observed::Exited {
                        exit_code: Some(code),
                        message: exit_message(Some(code), false, &self.log_path(session_id)),
                    },
                    // The session never ran: the node program failed before it (its reason
                    // is the last of the job's output).
                    None => Observed::Failed {
                        reason: format!("could not start on {nodes}: {}", tail(&self.log_path(session_id), 3).trim()),
                    },
                }
            }
            Phase::Ended(Ended::TimeLimit) => {
                Observed::Expired { message: "it reached its time limit in Slurm".into() }
            }
            Phase::Ended(Ended::Failed(reason)) => Observed::Failed { reason },
        })
    }

    async fn stop(&self, session_id: Uuid, handle: &Handle) -> RuntimeResult<()> {
        let jobs = self.jobs(Duration::ZERO).await?;
        let mut ids: Vec<u64> =
            jobs.iter().filter(|j| j.session == session_id && queue::active(&j.state)).map(|j| j.id).collect();
        // A full handle, or a found one (`list`): its job's id is all a stop needs.
        if let Some(job_id) = handle.0.get("job_id").and_then(serde_json::Value::as_u64) {
            if !ids.contains(&job_id) && jobs.iter().all(|j| j.id != job_id) {
                // Not in the listing: submitted after it, maybe.
                if self.job_info(job_id).await?.is_some_and(|(state, _, _)| queue::active(&state)) {
                    ids.push(job_id);
                }
            }
        }
        if !ids.is_empty() {
            let args: Vec<String> = ids.iter().map(u64::to_string).collect();
            let output = command("scancel", &args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            // Ended meanwhile: what a stop wants.
            if !output.status.success() && !stderr.contains("Invalid job id") && !stderr.contains("already completing")
            {
                bail!("scancel {}: {}", args.join(" "), said(&output.stderr));
            }
            let deadline = Instant::now() + self.config.folders.stop_grace + END_WAIT;
            loop {
                let jobs = self.jobs(Duration::ZERO).await?;
                if !jobs.iter().any(|j| ids.contains(&j.id) && queue::active(&j.state)) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("Slurm has not ended job(s) {} of session {session_id} yet", args.join(" "));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        self.ready.lock().expect("not poisoned").remove(&session_id);
        match std::fs::remove_dir_all(self.dir(session_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(session.id = %session_id, error = %e, "cannot remove a stopped session's folder");
            }
            _ => {}
        }
        Ok(())
    }

    async fn list(&self) -> RuntimeResult<Vec<Found>> {
        let jobs = self.jobs(Duration::ZERO).await?;
        Ok(jobs
            .iter()
            .filter(|j| queue::active(&j.state))
            // What a stop needs (the job's id): nothing read from the session's folder on
            // each pass.
            .map(|j| Found { session_id: j.session, handle: Handle(serde_json::json!({ "job_id": j.id })) })
            .collect())
    }

    async fn logs(&self, session_id: Uuid, _handle: &Handle, lines: usize) -> RuntimeResult<String> {
        Ok(tail(&self.log_path(session_id), lines))
    }

    async fn check_placement(&self, placement: &SlurmPlacement) -> Result<(), (&'static str, String)> {
        let Some(partition) = &placement.partition else { return Ok(()) };
        let known = match slurm("sinfo", &["--noheader", "--format=%R"]).await {
            Ok(text) => text.split_whitespace().map(str::to_owned).collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "cannot list the cluster's partitions to check a flavour's");
                return Ok(());
            }
        };
        if known.iter().any(|p| p == partition) {
            return Ok(());
        }
        Err(("slurm_partition", format!("the cluster has no partition {partition:?} (it has: {})", known.join(", "))))
    }

    async fn report(&self, session_id: Uuid, secret: &str, report: &NodeReport) -> RuntimeResult<bool> {
        let Some(launch) = self.launch_of(session_id) else { return Ok(false) };
        if !authentic(&launch, secret) {
            return Ok(false);
        }
        if let NodeReport::Listening { host, port } = report {
            anyhow::ensure!(plain_host(host) && *port > 0, "not a host and port: {host:?}:{port}");
            let address = match host.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
                _ => format!("{host}:{port}"),
            };
            let dir = self.dir(session_id);
            write(&dir.join("endpoint.tmp"), &address)?;
            std::fs::rename(dir.join("endpoint.tmp"), dir.join(ENDPOINT)).context("cannot record the endpoint")?;
            self.ready.lock().expect("not poisoned").remove(&session_id);
        }
        Ok(true)
    }

    async fn keep_until(
        &self,
        session_id: Uuid,
        handle: &Handle,
        expires_at: time::OffsetDateTime,
    ) -> RuntimeResult<()> {
        let handle = handle_of(handle)?;
        let jobs = self.jobs(FRESH).await?;
        let Some(job) = jobs.iter().find(|j| j.id == handle.job_id && queue::active(&j.state)) else { return Ok(()) };
        let Some(limit) = queue::seconds(&job.time_limit) else { return Ok(()) };
        let used = queue::seconds(&job.elapsed).unwrap_or(0);
        let left = (expires_at - time::OffsetDateTime::now_utc()).whole_seconds().max(0) as u64;
        // Raised when less than a minute of the margin is left (an extension), not each pass.
        if limit >= used + left + 60 {
            return Ok(());
        }
        let minutes = (used + left + MARGIN_SECONDS).div_ceil(60);
        let id = handle.job_id.to_string();
        slurm("scontrol", &["update", &format!("JobId={id}"), &format!("TimeLimit={minutes}")]).await?;
        tracing::info!(session.id = %session_id, job_id = handle.job_id, minutes, "raised the job's time limit");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(root: &Path) -> SlurmRuntime {
        let folders = LocalConfig {
            sessions_dir: root.join("sessions"),
            homes_dir: root.join("homes"),
            data_root: root.join("data"),
            venv: root.join("venv"),
            tools_dir: root.join("tools"),
            stop_grace: Duration::from_secs(5),
            gpu_devices: Vec::new(),
        };
        let config = SlurmConfig {
            folders,
            callback_url: "http://daas.example.org:8080/".parse().unwrap(),
            daas_path: "/opt/daas it's/daas".into(),
            warning: Duration::from_secs(900),
        };
        SlurmRuntime { config, queue: Default::default(), ready: Default::default() }
    }

    /// alice's session of `kind` with `resources` (JSON) and `secret`.
    fn spec(kind: &str, resources: serde_json::Value, secret: &str) -> LaunchSpec {
        serde_json::from_value(serde_json::json!({
            "session_id": Uuid::nil(), "kind": kind, "owner": "alice", "uid": 3000000,
            "image": {"name": "x", "reference": "x", "local_command": null},
            "resources": resources, "proposal": "p", "experiment": "e", "experiment_folder": "f",
            "datasets": [], "secret": secret, "base_url": "/", "parameters": null,
        }))
        .unwrap()
    }

    #[test]
    fn a_flavour_becomes_sbatch_options_and_the_script_runs_only_the_node_program() {
        let root = tempfile::tempdir().unwrap();
        let runtime = runtime(root.path());
        let resources = serde_json::json!({
            "cpu_millis": 1500, "memory_mib": 4096, "gpus": 2, "gpu_type": "v100", "disk_gib": 0,
            "node_selector": {}, "tolerations": [],
            "slurm": {"partition": "maxgpu", "account": "bl11", "qos": null, "constraint": "v100&ib"},
        });
        let mut spec = spec("notebook", resources, "Jupyter-token-7f3a");
        spec.expires_at = Some(time::OffsetDateTime::now_utc() + time::Duration::minutes(60));
        let args = runtime.sbatch_args(&spec);
        for expected in [
            "--cpus-per-task=2",
            "--mem=4096M",
            "--gres=gpu:v100:2",
            "--partition=maxgpu",
            "--account=bl11",
            "--constraint=v100&ib",
            "--time=62",
            "--signal=B:USR1@900",
            "--export=NONE",
            "--comment=daas.io/session-id=00000000-0000-0000-0000-000000000000",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} not in {args:?}");
        }
        assert!(!args.iter().any(|a| a.starts_with("--qos")), "{args:?}");
        assert!(!args.iter().any(|a| a.contains(&spec.secret)), "a secret in sbatch's arguments: {args:?}");
        let script = runtime.script(Path::new("/srv/sessions/x"));
        assert!(script.ends_with("exec '/opt/daas it'\\''s/daas' slurm-node '/srv/sessions/x'\n"), "{script}");
    }

    #[test]
    fn only_the_node_secret_is_authentic_and_only_plain_hosts_are_taken() {
        let root = tempfile::tempdir().unwrap();
        let runtime = runtime(root.path());
        let resources = serde_json::json!({
            "cpu_millis": 1000, "memory_mib": 1024, "gpus": 0, "gpu_type": null, "disk_gib": 0,
            "node_selector": {}, "tolerations": [],
        });
        let spec = spec("desktop", resources, "vnc");
        std::fs::create_dir_all(root.path().join("sessions")).unwrap();
        runtime.write_folder(&spec).unwrap();
        let launch = runtime.launch_of(Uuid::nil()).unwrap();
        assert!(authentic(&launch, &launch.node_secret));
        assert!(!authentic(&launch, &launch.relay_key) && !authentic(&launch, "vnc") && !authentic(&launch, ""));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(runtime.dir(Uuid::nil()).join(LAUNCH)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(launch.report_url.ends_with("/api/v1/runtime/sessions/00000000-0000-0000-0000-000000000000/report"));
        for host in ["10.1.2.3", "::1", "node7.cluster", "n-1"] {
            assert!(plain_host(host), "{host}");
        }
        for host in ["", "a b", "x@y", "a/b", "h:1"] {
            assert!(!plain_host(host), "{host}");
        }
    }
}
