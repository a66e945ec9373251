//! Proxy benchmarks (not tests): daas's desktop relay against websockify and a direct TCP
//! connection, and daas's notebook proxy against configurable-http-proxy and a direct
//! connection, each with the same client and the same backend, one after the other in one
//! run. Prints the figures and the ratios.
//!
//! `make bench-proxies` (`DATABASE_URL` names the server: a database of its own is created
//! and dropped; websockify comes from `.daas/venv`, configurable-http-proxy from
//! `tests/bench`, both installed by `make deps`). `BENCH_SECONDS` sets how long each
//! measurement runs (default 3); `BENCH_ONLY=desktop` or `notebook` runs one of the two.
//!
//! daas runs in a process of its own (this program started again with `serve`): the router
//! of `daas serve`, without the reconciler, since the sessions here are rows pointing at
//! the benchmark's backends, not processes the runtime started (the reconciler would find
//! them gone and stop them).

mod desktop;
#[path = "../common/latencies.rs"]
mod latencies;
mod notebook;

pub use latencies::Latencies;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

/// The repository, for the tools the benchmarks compare with.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, serve, url, port, data] = args.as_slice() {
        if serve == "serve" {
            return serve_daas(url, port.parse()?, Path::new(data)).await;
        }
    }
    let server_url = std::env::var("DATABASE_URL").map_err(|_| anyhow::anyhow!("set DATABASE_URL"))?;
    let name = format!("daas_bench_{}", std::process::id());
    let (server, _) = server_url.rsplit_once('/').expect("a URL with a database");
    let url = format!("{server}/{name}");
    let mut admin = PgConnection::connect(&server_url).await?;
    admin.execute(format!("create database {name}").as_str()).await?;
    let work = tempfile::tempdir()?;
    let result = run(&url, work.path()).await;
    admin.execute(format!("drop database {name} with (force)").as_str()).await?;
    result
}

async fn run(url: &str, work: &Path) -> anyhow::Result<()> {
    let seconds: f64 = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3.0);
    let bench = Bench::start(url, work, Duration::from_secs_f64(seconds)).await?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("Proxy benchmarks on {cores} cores; client, backend and proxy share them; {seconds} s per figure.\n");
    // `BENCH_ONLY=desktop` or `notebook`: one of the two.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only != "notebook" {
        desktop::run(&bench).await?;
    }
    if only != "desktop" {
        notebook::run(&bench).await?;
    }
    Ok(())
}

/// What both benchmarks share: the database with the demo data, daas serving it, and
/// alice's credentials.
pub struct Bench {
    pub db: PgPool,
    pub daas: Process,
    pub daas_port: u16,
    pub token: String,
    pub seconds: Duration,
}

impl Bench {
    async fn start(url: &str, work: &Path, seconds: Duration) -> anyhow::Result<Self> {
        let db = PgPool::connect(url).await?;
        daas::db::MIGRATOR.run(&db).await?;
        daas::demo::load_if_empty(&db, &work.join("data")).await?;
        let alice = daas::auth::users::find(&db, "alice").await?;
        let token = daas::auth::tokens::create(&db, alice, "bench", None).await?.1;
        let daas_port = free_port()?;
        let daas = Process::spawn(
            "daas",
            Command::new(std::env::current_exe()?).arg("serve").arg(url).arg(daas_port.to_string()).arg(work),
        )?;
        wait_port(daas_port).await?;
        Ok(Self { db, daas, daas_port, token, seconds })
    }

    /// `n` running sessions of `kind` owned by alice, all pointing at `endpoint`.
    pub async fn add_sessions(&self, kind: &str, n: usize, endpoint: &str, secret: &str) -> anyhow::Result<Vec<Uuid>> {
        let ids = sqlx::query_scalar(
            "with new as (
                insert into sessions (owner_id, experiment_id, image_id, flavour_id, kind, state, cpu_millis, memory_mib,
                                      runtime, endpoint, secret, started_at, expires_at)
                select u.id, e.id, (select id from images where kind = $1 order by name limit 1), f.id, $1, $5,
                       1000, 1024, 'local', $3, $4, now(), now() + interval '1 day'
                from users u, experiments e, flavours f, generate_series(1, $2)
                where u.username = 'alice' and e.code = 'S0011' and f.name = 'small'
                returning id, owner_id)
             insert into session_members (session_id, user_id, role) select id, owner_id, 'owner' from new
             returning session_id",
        )
        .bind(kind)
        .bind(i32::try_from(n)?)
        .bind(endpoint)
        .bind(secret)
        .bind(daas::sessions::lifecycle::SessionState::Running)
        .fetch_all(&self.db)
        .await?;
        Ok(ids)
    }
}

/// daas's router on `port`, as `daas serve` builds it, without the reconciler.
async fn serve_daas(url: &str, port: u16, work: &Path) -> anyhow::Result<()> {
    use daas::runtime::local::{Limits, LocalConfig, LocalRuntime};
    let db = PgPool::connect(url).await?;
    let config = daas::state::Config { data_root: work.join("data"), ..Default::default() };
    // Never asked to start anything here; it only has to exist.
    let runtime = LocalRuntime::new(
        LocalConfig {
            sessions_dir: work.join("sessions"),
            homes_dir: work.join("homes"),
            data_root: work.join("data"),
            venv: PathBuf::from(ROOT).join(".daas/venv"),
            tools_dir: PathBuf::from(ROOT).join("tools"),
            stop_grace: Duration::from_secs(1),
            gpu_devices: Vec::new(),
        },
        Limits::Rlimits,
    )?;
    let state = daas::AppState::new(db, config, Arc::new(runtime));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let background = daas::background::start(&state, daas::background::Reconciler::Leave);
    let app = daas::app(state, &background).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).await?;
    Ok(())
}

/// A process the benchmark started, killed when dropped (also on an error).
pub struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    /// Starts `command` as the leader of a process group of its own.
    pub fn spawn(name: &'static str, command: &mut Command) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let child = command.process_group(0).spawn().map_err(|e| anyhow::anyhow!("cannot start {name}: {e}"))?;
        Ok(Self { name, child })
    }

    /// Proportional set size of the process and all its descendants, in MiB: what it
    /// costs the machine, shared pages counted once (websockify forks per connection).
    pub fn memory_mib(&self) -> f64 {
        let mut pids = vec![self.child.id()];
        let mut i = 0;
        while i < pids.len() {
            pids.extend(children(pids[i]));
            i += 1;
        }
        let kib: u64 = pids.iter().map(|&pid| pss_kib(pid)).sum();
        kib as f64 / 1024.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // websockify's forked children belong to its process group. Not reaped yet, the
        // child still holds its pid, so the group is still its own.
        // (Never `kill -9 -PGID`: procps-ng 4.0.2's kill turns it into kill(-1), every
        // process of the machine.)
        if let Ok(None) = self.child.try_wait() {
            if let Some(group) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
        }
        let _ = self.child.kill();
        if self.child.wait().is_err() {
            eprintln!("{} did not exit", self.name);
        }
    }
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

fn pss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts connections on the port.
pub async fn wait_port(port: u16) -> anyhow::Result<()> {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("nothing answers on port {port} after 30 s")
}

/// A figure, or `-` where there is none (the memory of a direct connection).
fn cell(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}")
    } else {
        "-".into()
    }
}

/// A table: one row per figure, one column per way of reaching the backend (direct, the
/// tool facilities run, daas), then the ratios of daas's figure to the others'.
pub struct Table {
    columns: [&'static str; 3],
    rows: Vec<(String, [f64; 3])>,
}

impl Table {
    pub fn new(columns: [&'static str; 3]) -> Self {
        Self { columns, rows: Vec::new() }
    }

    pub fn row(&mut self, name: impl Into<String>, values: [f64; 3]) {
        self.rows.push((name.into(), values));
    }

    pub fn print(&self) {
        let [direct, other, daas] = self.columns;
        println!(
            "| {:<40} | {:>10} | {:>10} | {:>10} | {:>12} | {:>12} |",
            "",
            direct,
            other,
            daas,
            format!("daas/{other}"),
            format!("daas/{direct}")
        );
        println!("|{:-<42}|{:->12}|{:->12}|{:->12}|{:->14}|{:->14}|", "", "", "", "", "", "");
        for (name, [d, o, s]) in &self.rows {
            let [d, o, s, vs_other, vs_direct] = [*d, *o, *s, s / o, s / d].map(cell);
            println!("| {name:<40} | {d:>10} | {o:>10} | {s:>10} | {vs_other:>12} | {vs_direct:>12} |");
        }
        println!(
            "(ratios: daas's figure over the other's; for rates higher is better, for latencies and memory lower)\n"
        );
    }
}
