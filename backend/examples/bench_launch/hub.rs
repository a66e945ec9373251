//! JupyterHub 5 as a facility runs it for the same job: its REST API, configurable-http-proxy
//! in front, `tools/bench/jupyterhub_config.py` (dummy authenticator, named servers, a
//! spawner starting the trivial server or, for the control plane alone, nothing). Its
//! sqlite commits without fsync (`BENCH_HUB_SQLITE_SYNC=off`), as daas's development
//! PostgreSQL does (`fsync = off`): like for like; with fsync on this disk, the hub's
//! launches are about 3 times slower (its event loop waits on each commit).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{children, cpu_ticks, free_port, from_trivial_server, tools_bench, ROOT, TICKS_PER_SECOND};

/// The admin API token the benchmark gives the hub (a service's).
const TOKEN: &str = "bench-hub-admin-token-0123456789";
/// The user whose servers are launched.
const USER: &str = "alice";

pub struct Hub {
    process: Child,
    port: u16,
    http: reqwest::Client,
    /// Its working folder, where every process it starts runs.
    dir: std::path::PathBuf,
}

impl Hub {
    /// Starts JupyterHub with `spawner` (`process` or `instant`) in a folder of its own; ready
    /// when its API answers and alice exists.
    pub async fn start(work: &Path, spawner: &str) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let dir = work.join(format!("hub-{spawner}"));
        std::fs::create_dir_all(&dir)?;
        let (port, hub_port) = (free_port()?, free_port()?);
        let log = std::fs::File::create(dir.join("jupyterhub.log"))?;
        let process = Command::new(format!("{ROOT}/.daas/venv/bin/jupyterhub"))
            .arg("-f")
            .arg(tools_bench().join("jupyterhub_config.py"))
            .current_dir(&dir)
            .env("BENCH_HUB_PORT", port.to_string())
            .env("BENCH_HUB_HUB_PORT", hub_port.to_string())
            .env("BENCH_HUB_PROXY_API_PORT", free_port()?.to_string())
            .env("BENCH_HUB_TOKEN", TOKEN)
            .env("BENCH_HUB_SPAWNER", spawner)
            .env("BENCH_HUB_SQLITE_SYNC", "off")
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start JupyterHub (make deps installs it): {e}"))?;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        let hub = Self { process, port, http, dir };
        let start = Instant::now();
        // The hub's own port first: the proxy logs a stack trace for each request before
        // the hub's route exists.
        let own = format!("http://127.0.0.1:{hub_port}/hub/api/");
        loop {
            let up = hub.http.get(&own).send().await.is_ok_and(|r| r.status() == 200);
            if up && matches!(hub.api(reqwest::Method::GET, "/hub/api/", None).await, Ok((200, _))) {
                break;
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(60), "JupyterHub did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, body) = hub.api(reqwest::Method::POST, &format!("/hub/api/users/{USER}"), None).await?;
        anyhow::ensure!(status == 201 || status == 409, "creating {USER} answered {status}: {body}");
        Ok(hub)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method, self.url(path)).header("authorization", format!("token {TOKEN}"));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Launches the named server `name`: 201 when it is ready, 202 while it starts (then its
    /// progress stream, until ready); then, if asked, until it answers through the proxy.
    pub async fn launch(&self, name: &str, through_proxy: bool) -> anyhow::Result<String> {
        let path = format!("/hub/api/users/{USER}/servers/{name}");
        let (status, body) = self.api(reqwest::Method::POST, &path, None).await?;
        match status {
            201 => {}
            202 => {
                let mut progress = self
                    .http
                    .get(self.url(&format!("{path}/progress")))
                    .header("authorization", format!("token {TOKEN}"))
                    .send()
                    .await?;
                anyhow::ensure!(progress.status() == 200, "progress answered {}", progress.status());
                let mut seen = String::new();
                loop {
                    let chunk = progress.chunk().await?.ok_or_else(|| anyhow::anyhow!("progress ended: {seen}"))?;
                    seen.push_str(&String::from_utf8_lossy(&chunk));
                    if seen.contains("\"ready\": true") || seen.contains("\"ready\":true") {
                        break;
                    }
                    anyhow::ensure!(!seen.contains("\"failed\": true"), "spawn failed: {seen}");
                }
            }
            _ => anyhow::bail!("launching {name} answered {status}: {body}"),
        }
        if through_proxy {
            let response = self.http.get(self.url(&format!("/user/{USER}/{name}/"))).send().await?;
            anyhow::ensure!(from_trivial_server(&response), "{name} does not answer through JupyterHub's proxy");
        }
        Ok(name.to_string())
    }

    /// The user's servers, as the user model lists them; how many are ready.
    pub async fn list(&self) -> anyhow::Result<usize> {
        let (status, body) = self.api(reqwest::Method::GET, &format!("/hub/api/users/{USER}"), None).await?;
        anyhow::ensure!(status == 200, "the user model answered {status}");
        Ok(body["servers"].as_object().map_or(0, |servers| servers.len()))
    }

    /// Stops and removes every named server, then waits until none is left.
    pub async fn stop_all(&self, names: &[String]) -> anyhow::Result<()> {
        let body = serde_json::json!({ "remove": true });
        for name in names {
            let (status, answer) = self
                .api(reqwest::Method::DELETE, &format!("/hub/api/users/{USER}/servers/{name}"), Some(&body))
                .await?;
            anyhow::ensure!(status == 202 || status == 204, "stopping {name} answered {status}: {answer}");
        }
        let start = Instant::now();
        while self.list().await? > 0 {
            anyhow::ensure!(start.elapsed() < Duration::from_secs(300), "not all stopped after 300 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// CPU seconds the hub and its proxy used so far (not the servers it spawned).
    pub fn cpu_seconds(&self) -> f64 {
        let pid = self.process.id();
        let proxy: u64 = children(pid)
            .into_iter()
            .filter(|&child| std::fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|c| c.trim() == "node"))
            .map(|child| cpu_ticks(child, false))
            .sum();
        (cpu_ticks(pid, false) + proxy) as f64 / TICKS_PER_SECOND
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // SIGTERM: the hub stops its servers (`cleanup_servers`) and its proxy, which takes
        // about 25 s with 500 servers running.
        crate::signal(self.process.id(), rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Its proxy and servers run in sessions of their own, but all in its folder.
        let _ = self.process.kill();
        let _ = self.process.wait();
        let Ok(entries) = std::fs::read_dir("/proc") else { return };
        for pid in entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()) {
            if std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&self.dir)) {
                crate::signal(pid, rustix::process::Signal::KILL);
            }
        }
    }
}
