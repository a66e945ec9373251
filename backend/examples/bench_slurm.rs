//! `make bench-slurm`: the Slurm runtime beside what the peers do, on a private one-node
//! cluster (the tests' `cluster::Cluster`), with the node full so that every session stays
//! pending:
//!
//! - launches per second: `N` sessions through `SlurmRuntime::launch` (its folder, its
//!   launch description, `sbatch`), one after another and 8 at a time, beside `N` bare
//!   `sbatch --wrap` (what any spawner pays at least);
//! - the controller's RPCs for one reconcile pass over the `N` pending sessions (`sdiag`'s
//!   counts by message type, reset before), beside batchspawner's poll of the same jobs
//!   (its Slurm default, `squeue -h -j {job_id} -o '%T %B'`, one per session per poll).
//!
//! `BENCH_SESSIONS` (default 100) sessions. Run as root (daas and the test cluster are).

// The tests' cluster, of which the benchmark uses a part.
#[allow(dead_code)]
#[path = "../../tests/api/cluster.rs"]
mod cluster;

use std::sync::Arc;
use std::time::{Duration, Instant};

use daas::runtime::local::LocalConfig;
use daas::runtime::slurm::{SlurmConfig, SlurmRuntime};
use daas::runtime::{Handle, LaunchSpec, Runtime};
use uuid::Uuid;

/// The RPCs `sdiag` counted since its last reset, by message type (but `sdiag`'s own).
fn rpcs(cluster: &cluster::Cluster) -> Vec<(String, u64)> {
    let text = cluster.run("sdiag", &[]);
    let section = text.split("Remote Procedure Call statistics by message type").nth(1).unwrap_or("");
    let section = section.split("Remote Procedure Call statistics by user").next().unwrap_or("");
    section
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once('(')?;
            let count = rest.split("count:").nth(1)?.split_whitespace().next()?.parse().ok()?;
            Some((name.trim().to_string(), count))
        })
        .filter(|(name, _)| name != "REQUEST_STATS_INFO")
        .collect()
}

fn total(counts: &[(String, u64)]) -> u64 {
    counts.iter().map(|(_, n)| n).sum()
}

fn spec(id: Uuid) -> LaunchSpec {
    serde_json::from_value(serde_json::json!({
        "session_id": id, "kind": "job", "owner": "bench", "uid": 3_000_000,
        "image": {"name": "sleep", "reference": "x", "local_command": {"argv": ["sleep", "1"]}},
        "resources": {"cpu_millis": 1000, "memory_mib": 100, "gpus": 0, "gpu_type": null, "disk_gib": 0,
                      "node_selector": {}, "tolerations": []},
        "proposal": "p", "experiment": "e", "experiment_folder": "f", "datasets": [], "secret": "s",
        "base_url": "/", "parameters": {},
    }))
    .map(|spec: LaunchSpec| LaunchSpec {
        expires_at: Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
        ..spec
    })
    .unwrap()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let cluster = cluster::Cluster::start(2);
    std::env::set_var("SLURM_CONF", &cluster.conf);
    // The node full for the whole run: every job below stays pending.
    let blocker = cluster.run("sbatch", &["--parsable", "--cpus-per-task=2", "--wrap", "sleep 3600"]);
    let folders = tempfile::tempdir()?;
    let runtime = Arc::new(SlurmRuntime::new(SlurmConfig {
        folders: LocalConfig {
            sessions_dir: folders.path().join("sessions"),
            homes_dir: folders.path().join("homes"),
            data_root: folders.path().join("data"),
            venv: folders.path().join("venv"),
            tools_dir: folders.path().join("tools"),
            stop_grace: Duration::from_secs(1),
            gpu_devices: Vec::new(),
        },
        callback_url: "http://127.0.0.1:9/".parse()?,
        daas_path: std::env::current_exe()?,
        warning: Duration::from_secs(900),
    })?);

    println!("{n} sessions on a full one-node cluster (Slurm {})", cluster.run("sinfo", &["--version"]).trim());
    let start = Instant::now();
    for _ in 0..n {
        cluster.run("sbatch", &["--parsable", "--job-name=bare", "--wrap", "sleep 1"]);
    }
    let bare = n as f64 / start.elapsed().as_secs_f64();
    cluster.run("scancel", &["--name=bare"]);

    let mut handles: Vec<(Uuid, Handle)> = Vec::new();
    let start = Instant::now();
    for _ in 0..n / 2 {
        let spec = spec(Uuid::new_v4());
        handles.push((spec.session_id, runtime.launch(&spec).await?));
    }
    let serial = (n / 2) as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(8));
    for _ in n / 2..n {
        let (runtime, gate) = (runtime.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire().await;
            let spec = spec(Uuid::new_v4());
            runtime.launch(&spec).await.map(|h| (spec.session_id, h))
        });
    }
    while let Some(done) = tasks.join_next().await {
        handles.push(done??);
    }
    let parallel = (n - n / 2) as f64 / start.elapsed().as_secs_f64();
    println!(
        "launches per second: bare sbatch {bare:.1}, daas one at a time {serial:.1} ({:.2}x), daas 8 at a time {parallel:.1} ({:.2}x)",
        serial / bare,
        parallel / bare
    );

    // One reconcile pass: the listing, then every session observed (as the reconciler does,
    // all at once) and its time limit checked.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.run("sdiag", &["--reset"]);
    let start = Instant::now();
    runtime.list().await?;
    let mut tasks = tokio::task::JoinSet::new();
    for (id, handle) in handles.clone() {
        let runtime = runtime.clone();
        tasks.spawn(async move {
            let seen = runtime.observe(id, &handle).await?;
            runtime.keep_until(id, &handle, time::OffsetDateTime::now_utc() + time::Duration::minutes(30)).await?;
            anyhow::Ok(seen)
        });
    }
    let mut pending = 0;
    while let Some(seen) = tasks.join_next().await {
        pending += matches!(seen??, daas::runtime::Observed::Queued { .. }) as usize;
    }
    let pass = start.elapsed();
    let daas = rpcs(&cluster);
    assert_eq!(pending, n, "every session should be pending");

    cluster.run("sdiag", &["--reset"]);
    let start = Instant::now();
    for (_, handle) in &handles {
        let job = handle.0["job_id"].to_string();
        cluster.run("squeue", &["-h", "-j", &job, "-o", "%T %B"]);
    }
    let poll = start.elapsed();
    let peer = rpcs(&cluster);
    println!(
        "controller RPCs for one pass over {n} pending sessions: daas {} ({:?}) in {:.2} s; batchspawner's poll {} ({:?}) in {:.2} s: {:.0}x fewer",
        total(&daas),
        daas,
        pass.as_secs_f64(),
        total(&peer),
        peer,
        poll.as_secs_f64(),
        total(&peer) as f64 / total(&daas).max(1) as f64
    );

    for (id, handle) in &handles {
        runtime.stop(*id, handle).await?;
    }
    cluster.run("scancel", &[blocker.trim()]);
    Ok(())
}
