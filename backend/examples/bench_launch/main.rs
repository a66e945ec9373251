//! Control-plane benchmarks (not tests), daas beside the tool a facility runs instead, one
//! after the other in one run on this machine:
//!
//! - `launch` (`make bench-launch`): daas against JupyterHub 5 (configurable-http-proxy,
//!   `tools/bench/jupyterhub_config.py`). First with real processes: both start the same
//!   trivial server per session (`python3 -m http.server`; daas in its sandbox, JupyterHub
//!   with its local-process spawner) and a launch counts from the request until the server
//!   answers through the system's proxy. Then the control planes alone: daas's fake runtime
//!   against a spawner that starts nothing. Launches per second for `BENCH_SESSIONS` at once
//!   (default `100,500`), p50/p99 of one launch at a time, requests per second and p99 of
//!   "list my sessions" with them running, CPU seconds per launch of each system (daas and
//!   PostgreSQL; JupyterHub and its proxy; the sessions' own processes not counted), and
//!   where daas's launch time goes (its `daas_launch_phase_seconds`).
//! - `restart` (`make bench-restart`): `BENCH_SESSIONS` (default 1,000) sessions running,
//!   daas restarted: seconds until it is ready and until every session answers through its
//!   proxy again.
//! - `db` (`make bench-db`): see `facility.rs`.
//!
//! `DATABASE_URL` names the server: a database of its own is created and dropped.

mod facility;
mod hub;
#[path = "../common/latencies.rs"]
mod latencies;
mod restart;

pub use latencies::Latencies;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// The repository, for the tools the benchmarks compare with.
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// One launch at a time, this many times, for the p50/p99 of one launch.
const ONE_AT_A_TIME: usize = 30;
/// Clients calling "list my sessions" at once, and for how long.
const LIST_CLIENTS: usize = 8;
const LIST_FOR: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let what = std::env::args().nth(1).unwrap_or_else(|| "launch".into());
    let server_url = std::env::var("DATABASE_URL").map_err(|_| anyhow::anyhow!("set DATABASE_URL"))?;
    let name = format!("daas_bench_{}", std::process::id());
    let (server, _) = server_url.rsplit_once('/').expect("a URL with a database");
    let url = format!("{server}/{name}");
    let mut admin = PgConnection::connect(&server_url).await?;
    admin.execute(format!("create database {name}").as_str()).await?;

    let work = tempfile::tempdir()?;
    let result = match what.as_str() {
        "launch" => launch(&url, work.path()).await,
        "restart" => restart::run(&url, work.path()).await,
        "db" => facility::run(&url, work.path()).await,
        other => Err(anyhow::anyhow!("unknown benchmark {other}: launch, restart or db")),
    };
    // Sessions outlive daas by design: after a failure, kill what is left.
    daas::runtime::local::kill_all(&work.path().join("sessions"));
    admin.execute(format!("drop database {name} with (force)").as_str()).await?;
    result
}

/// The counts of sessions launched at once (`BENCH_SESSIONS`, comma-separated).
pub fn counts(default: &str) -> anyhow::Result<Vec<usize>> {
    let text = std::env::var("BENCH_SESSIONS").unwrap_or_else(|_| default.into());
    Ok(text.split(',').map(|n| n.trim().parse()).collect::<Result<_, _>>()?)
}

/// The benchmark's database with the demo data, a trivial notebook image running `argv`,
/// and the admin's API token and portal cookie.
pub struct Setup {
    pub db: PgPool,
    pub url: String,
    pub token: String,
    pub cookie: String,
    /// The body of a launch.
    pub launch: Value,
}

impl Setup {
    pub async fn new(url: &str, work: &Path, argv: Value) -> anyhow::Result<Self> {
        let db = PgPool::connect(url).await?;
        daas::db::MIGRATOR.run(&db).await?;
        daas::demo::load_if_empty(&db, &work.join("data")).await?;
        let image: uuid::Uuid = sqlx::query_scalar(
            "insert into images (name, kind, reference, protocol, default_cpu_millis, default_memory_mib, local_command)
             values ('Trivial', 'notebook', 'example/trivial:1', 'http', 100, 64, $1) returning id",
        )
        .bind(json!({ "argv": argv }))
        .fetch_one(&db)
        .await?;
        let flavour: uuid::Uuid =
            sqlx::query_scalar("select id from flavours where name = 'small'").fetch_one(&db).await?;
        // bob's proposal has no proposal quota; the admin role has no limits.
        let experiment: uuid::Uuid =
            sqlx::query_scalar("select id from experiments where code = 'S0201'").fetch_one(&db).await?;
        let admin = daas::auth::users::find(&db, "admin").await?;
        let token = daas::auth::tokens::create(&db, admin, "bench", None).await?.1;
        let config = daas::state::Config::default();
        let cookie = daas::auth::sessions::create(&db, &config, admin, None, None).await?;
        let cookie = cookie.to_str()?.split(';').next().unwrap_or_default().to_string();
        let launch = json!({"image": image, "flavour": flavour, "experiment": experiment});
        Ok(Self { db, url: url.into(), token, cookie, launch })
    }
}

/// `daas serve` in a process of its own, killed when dropped.
pub struct Daas {
    pub port: u16,
    serve: Serve,
    process: Child,
    pub http: reqwest::Client,
    pub token: String,
    pub cookie: String,
    pub launch: Value,
    /// PostgreSQL's postmaster, whose CPU (and its backends') counts as daas's.
    postmaster: u32,
}

impl Daas {
    /// Starts daas with `runtime` (`local` or `fake`) on the setup's database; ready when
    /// `/readyz` answers (after its first reconcile pass, which adopts what runs).
    pub async fn start(setup: &Setup, work: &Path, runtime: &str) -> anyhow::Result<Self> {
        let port = free_port()?;
        let serve = Serve { url: setup.url.clone(), work: work.to_owned(), runtime: runtime.into(), port };
        let process = serve.spawn()?;
        let postmaster: i32 = sqlx::query_scalar("select pg_backend_pid()").fetch_one(&setup.db).await?;
        let postmaster = parent(postmaster as u32).ok_or_else(|| anyhow::anyhow!("no postmaster"))?;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        let daas = Self {
            port,
            serve,
            process,
            http,
            token: setup.token.clone(),
            cookie: setup.cookie.clone(),
            launch: setup.launch.clone(),
            postmaster,
        };
        daas.wait_ready(Instant::now()).await?;
        Ok(daas)
    }

    /// Stops daas as an operator would (SIGTERM; the sessions go on running) and starts it
    /// again on the same port; when the new process was started.
    pub async fn restart(&mut self) -> anyhow::Result<Instant> {
        signal(self.process.id(), rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.process.try_wait()?.is_none() {
            anyhow::ensure!(Instant::now() < deadline, "daas did not stop within 30 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = Instant::now();
        self.process = self.serve.spawn()?;
        Ok(started)
    }

    /// Waits until `/readyz` answers 200; the time since `since` when it did.
    pub async fn wait_ready(&self, since: Instant) -> anyhow::Result<Duration> {
        loop {
            if let Ok(response) = self.http.get(self.url("/readyz")).send().await {
                if response.status() == 200 {
                    return Ok(since.elapsed());
                }
            }
            anyhow::ensure!(since.elapsed() < Duration::from_secs(60), "daas did not become ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// The session's own origin's cookie, as a browser gets it: the portal's ticket, then
    /// the session origin's `/_daas/enter`.
    pub async fn notebook_cookie(&self, id: &str) -> anyhow::Result<(String, String)> {
        let open =
            self.http.get(self.url(&format!("/sessions/{id}/open"))).header("cookie", &self.cookie).send().await?;
        anyhow::ensure!(open.status() == 303, "open answered {}", open.status());
        let ticket = url::Url::parse(open.headers()["location"].to_str()?)?;
        let host = format!("{}:{}", ticket.host_str().unwrap_or_default(), ticket.port().unwrap_or(80));
        let enter = format!("{}?{}", ticket.path(), ticket.query().unwrap_or_default());
        let entered = self.http.get(self.url(&enter)).header("host", &host).send().await?;
        anyhow::ensure!(entered.status() == 200, "enter answered {}", entered.status());
        let cookie = entered.headers()["set-cookie"].to_str()?.split(';').next().unwrap_or_default().to_string();
        Ok((host, cookie))
    }

    /// Whether the session's own server answers through the notebook proxy.
    pub async fn answers(&self, host: &str, cookie: &str) -> anyhow::Result<bool> {
        let response = self.http.get(self.url("/")).header("host", host).header("cookie", cookie).send().await?;
        if from_trivial_server(&response) {
            return Ok(true);
        }
        eprintln!("{host} answered {}: {}", response.status(), response.text().await.unwrap_or_default());
        Ok(false)
    }

    /// CPU seconds daas and PostgreSQL have used so far.
    fn cpu_seconds(&self) -> f64 {
        let postgres: u64 = children(self.postmaster).iter().map(|&pid| cpu_ticks(pid, false)).sum();
        (cpu_ticks(self.process.id(), false) + cpu_ticks(self.postmaster, true) + postgres) as f64 / TICKS_PER_SECOND
    }

    /// The mean seconds of each launch phase so far, from daas's own metrics.
    async fn phases(&self) -> anyhow::Result<Vec<(String, f64, f64)>> {
        let text = self.http.get(self.url("/metrics")).send().await?.text().await?;
        let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        let mut phases = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("daas_launch_phase_seconds_sum{")) {
            let phase = line.split('"').nth(1).unwrap_or_default().to_string();
            let count = text
                .lines()
                .find(|l| l.starts_with(&format!("daas_launch_phase_seconds_count{{phase=\"{phase}\"}}")))
                .and_then(value)
                .unwrap_or(f64::NAN);
            phases.push((phase, value(line).unwrap_or(f64::NAN), count));
        }
        Ok(phases)
    }
}

/// How `daas serve` is started.
struct Serve {
    url: String,
    work: PathBuf,
    runtime: String,
    port: u16,
}

impl Serve {
    fn spawn(&self) -> anyhow::Result<Child> {
        let work = &self.work;
        let bin = std::env::var("DAAS_BIN")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/daas").into());
        Ok(Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--runtime", &self.runtime])
            .arg("--data-root")
            .arg(work.join("data"))
            .arg("--sessions-dir")
            .arg(work.join("sessions"))
            .arg("--homes-dir")
            .arg(work.join("homes"))
            .args(["--reconcile-interval", "1s"])
            // Starts at once without a limit, as the JupyterHub it is compared with
            // (`concurrent_spawn_limit = 0`); daas's default is twice the CPUs, which
            // queues a burst (see the `queued` phase).
            .args(["--max-starting", "1000"])
            .env("DATABASE_URL", &self.url)
            .env("DAAS_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?)
    }
}

impl Drop for Daas {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Whether an answer came from the sessions' trivial server (Python's `http.server`), not
/// from a proxy's own page.
pub fn from_trivial_server(response: &reqwest::Response) -> bool {
    response.headers().get("server").and_then(|v| v.to_str().ok()).is_some_and(|s| s.starts_with("SimpleHTTP"))
}

/// The two systems, driven the same way.
enum System {
    Daas(Daas),
    Hub(hub::Hub),
}

impl System {
    fn name(&self) -> &'static str {
        match self {
            System::Daas(_) => "daas",
            System::Hub(_) => "JupyterHub",
        }
    }

    /// One launch, from the request until it answers through the proxy (`through_proxy`) or
    /// until the system says it is ready; its id.
    async fn launch(&self, i: usize, through_proxy: bool) -> anyhow::Result<String> {
        match self {
            System::Daas(daas) => {
                let (status, body) = daas.api(reqwest::Method::POST, "/api/v1/sessions", Some(&daas.launch)).await?;
                anyhow::ensure!(status == 201, "launch answered {status}: {body}");
                let id = body["id"].as_str().unwrap_or_default().to_string();
                // The session's own event stream, until it runs; resumed after the last
                // event seen when it ends early (as a browser's EventSource does: daas ends
                // a stream it cannot feed, e.g. when no database connection is free).
                let mut last = String::from("0");
                let since = Instant::now();
                'resume: loop {
                    anyhow::ensure!(since.elapsed() < Duration::from_secs(600), "{id} not running after 600 s");
                    let mut events = daas
                        .http
                        .get(daas.url(&format!("/api/v1/sessions/{id}/events")))
                        .bearer_auth(&daas.token)
                        .header("last-event-id", &last)
                        .send()
                        .await?;
                    let mut seen = String::new();
                    while let Some(chunk) = events.chunk().await? {
                        seen.push_str(&String::from_utf8_lossy(&chunk));
                        if seen.contains("\"state\":\"running\"") {
                            break 'resume;
                        }
                        anyhow::ensure!(!seen.contains("\"state\":\"failed\""), "session failed: {seen}");
                    }
                    if let Some(id) = seen.lines().rev().find_map(|l| l.strip_prefix("id: ")) {
                        last = id.trim().to_string();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if through_proxy {
                    let (host, cookie) = daas.notebook_cookie(&id).await?;
                    anyhow::ensure!(daas.answers(&host, &cookie).await?, "session {id} does not answer through daas");
                }
                Ok(id)
            }
            System::Hub(hub) => hub.launch(&format!("s{i}"), through_proxy).await,
        }
    }

    /// "List my sessions" once; how many it lists.
    async fn list(&self) -> anyhow::Result<usize> {
        match self {
            System::Daas(daas) => {
                let (status, body) = daas.api(reqwest::Method::GET, "/api/v1/sessions?active=true", None).await?;
                anyhow::ensure!(status == 200, "list answered {status}");
                Ok(body.as_array().map_or(0, Vec::len))
            }
            System::Hub(hub) => hub.list().await,
        }
    }

    /// Stops them all and waits until nothing of them runs.
    async fn stop_all(&self, ids: &[String]) -> anyhow::Result<()> {
        match self {
            System::Daas(daas) => {
                for id in ids {
                    let (status, _) =
                        daas.api(reqwest::Method::DELETE, &format!("/api/v1/sessions/{id}"), None).await?;
                    anyhow::ensure!(status == 202, "stop answered {status}");
                }
                let start = Instant::now();
                while self.list().await? > 0 {
                    anyhow::ensure!(start.elapsed() < Duration::from_secs(300), "not all stopped after 300 s");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(())
            }
            System::Hub(hub) => hub.stop_all(ids).await,
        }
    }

    fn cpu_seconds(&self) -> f64 {
        match self {
            System::Daas(daas) => daas.cpu_seconds(),
            System::Hub(hub) => hub.cpu_seconds(),
        }
    }
}

/// One system's figures.
#[derive(Default)]
struct Figures {
    /// Per count of sessions at once: launches per second and CPU seconds per launch.
    at_once: Vec<(usize, f64, f64)>,
    one: Latencies,
    list_rate: f64,
    list: Latencies,
    listed: usize,
}

/// Runs the launch figures on one system.
async fn measure(system: &System, counts: &[usize], through_proxy: bool) -> anyhow::Result<Figures> {
    let system = Arc::new(system);
    let mut figures = Figures::default();
    let mut next = 0;
    // One at a time first, on an idle system.
    let mut ids = Vec::new();
    for _ in 0..ONE_AT_A_TIME {
        let started = Instant::now();
        ids.push(system.launch(next, through_proxy).await?);
        figures.one.push(started.elapsed());
        next += 1;
    }
    system.stop_all(&ids).await?;
    for (k, &n) in counts.iter().enumerate() {
        let cpu = system.cpu_seconds();
        let started = Instant::now();
        let launches = (next..next + n).map(|i| {
            let system = system.clone();
            async move { system.launch(i, through_proxy).await }
        });
        let ids: Vec<String> = futures_util::future::try_join_all(launches).await?;
        let took = started.elapsed().as_secs_f64();
        figures.at_once.push((n, n as f64 / took, (system.cpu_seconds() - cpu) / n as f64));
        next += n;
        if k + 1 == counts.len() {
            // "List my sessions" with the most running.
            let end = Instant::now() + LIST_FOR;
            let clients = (0..LIST_CLIENTS).map(|_| {
                let system = system.clone();
                async move {
                    let mut latencies = Latencies::default();
                    while Instant::now() < end {
                        let sent = Instant::now();
                        let listed = system.list().await?;
                        latencies.push(sent.elapsed());
                        anyhow::ensure!(listed > 0, "the list is empty");
                    }
                    anyhow::Ok(latencies)
                }
            });
            for latencies in futures_util::future::try_join_all(clients).await? {
                figures.list.extend(latencies);
            }
            figures.list_rate = figures.list.count() as f64 / LIST_FOR.as_secs_f64();
            figures.listed = system.list().await?;
        }
        system.stop_all(&ids).await?;
    }
    Ok(figures)
}

async fn launch(url: &str, work: &Path) -> anyhow::Result<()> {
    let counts = counts("100,500")?;
    let setup = Setup::new(url, work, json!(["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"])).await?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "Launch benchmarks on {cores} cores, one system after the other; the client shares the machine; \
         load average before: {}\n",
        load_average()
    );
    for (title, runtime, spawner, through_proxy) in [
        (
            "real processes (python3 -m http.server per session), until it answers through the proxy",
            "local",
            "process",
            true,
        ),
        (
            "control planes alone (daas's fake runtime; a JupyterHub spawner that starts nothing), until ready",
            "fake",
            "instant",
            false,
        ),
    ] {
        let daas = System::Daas(Daas::start(&setup, work, runtime).await?);
        let ours = measure(&daas, &counts, through_proxy).await?;
        let phases = match &daas {
            System::Daas(d) => d.phases().await?,
            System::Hub(_) => Vec::new(),
        };
        drop(daas);
        let hub = System::Hub(hub::Hub::start(work, spawner).await?);
        let theirs = measure(&hub, &counts, through_proxy).await?;
        let hub_name = hub.name();
        drop(hub);

        println!("## Launches, {title}\n");
        let mut table = Table::new([hub_name, "daas"]);
        for (i, &(n, _, _)) in ours.at_once.iter().enumerate() {
            table.row(format!("launches/s, {n} at once"), [theirs.at_once[i].1, ours.at_once[i].1], true);
            table.row(format!("CPU s per launch, {n} at once"), [theirs.at_once[i].2, ours.at_once[i].2], false);
        }
        let (mut one_hub, mut one_daas) = (theirs.one, ours.one);
        table.row("one launch p50 ms", [one_hub.percentile_ms(50.0), one_daas.percentile_ms(50.0)], false);
        table.row("one launch p99 ms", [one_hub.percentile_ms(99.0), one_daas.percentile_ms(99.0)], false);
        let (mut list_hub, mut list_daas) = (theirs.list, ours.list);
        let listed = format!("{} / {} listed", theirs.listed, ours.listed);
        table.row(format!("list my sessions req/s ({listed})"), [theirs.list_rate, ours.list_rate], true);
        table.row("list my sessions p99 ms", [list_hub.percentile_ms(99.0), list_daas.percentile_ms(99.0)], false);
        table.print();
        println!("Where daas's launches went (mean ms per launch, from `daas_launch_phase_seconds`):\n");
        for (phase, sum, count) in phases {
            println!("- {phase}: {:.1} ms ({count} launches)", sum / count * 1000.0);
        }
        println!();
    }
    println!("load average after: {}", load_average());
    Ok(())
}

/// A table of figures: one column per system, then daas's advantage, where above 1 is
/// better for daas (a rate's ratio daas/other, a cost's other/daas).
pub struct Table {
    columns: [&'static str; 2],
    rows: Vec<(String, [f64; 2], bool)>,
}

impl Table {
    pub fn new(columns: [&'static str; 2]) -> Self {
        Self { columns, rows: Vec::new() }
    }

    /// A row; `higher_is_better` for rates, not for times and costs.
    pub fn row(&mut self, name: impl Into<String>, values: [f64; 2], higher_is_better: bool) {
        self.rows.push((name.into(), values, higher_is_better));
    }

    pub fn print(&self) {
        let [other, daas] = self.columns;
        println!("| {:<44} | {:>12} | {:>10} | {:>14} |", "", other, daas, "daas better by");
        println!("|{:-<46}|{:->14}|{:->12}|{:->16}|", "", "", "", "");
        for (name, [o, d], higher) in &self.rows {
            let better = if *higher { d / o } else { o / d };
            println!("| {name:<44} | {o:>12.3} | {d:>10.3} | {:>13.2}x |", better);
        }
        println!();
    }
}

/// Sends `signal` to the process `pid` (never a group: see `bench_proxies`'s `Process`).
pub fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The machine's load averages (1, 5, 15 minutes).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A process's fields after its name in `/proc/PID/stat` (the name may hold spaces).
fn stat(pid: u32) -> Vec<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = text.rsplit_once(')') else { return Vec::new() };
    // The state is a letter: 0 in its place keeps the indexes of `man 5 proc` minus 3.
    rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect()
}

pub fn parent(pid: u32) -> Option<u32> {
    stat(pid).get(1).map(|&p| p as u32).filter(|&p| p > 0)
}

/// CPU clock ticks a process used (user and system, all its threads), with those of its
/// children it waited for when `reaped`.
pub fn cpu_ticks(pid: u32, reaped: bool) -> u64 {
    let fields = stat(pid);
    let take = if reaped { 4 } else { 2 };
    fields.get(11..11 + take).map_or(0, |f| f.iter().sum())
}

/// Linux's USER_HZ, the unit of `/proc/PID/stat`'s times.
pub const TICKS_PER_SECOND: f64 = 100.0;

pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| parent(p) == Some(pid))
        .collect()
}

/// The benchmark's working folder, for the tools it starts.
pub fn tools_bench() -> PathBuf {
    PathBuf::from(ROOT).join("tools/bench")
}
