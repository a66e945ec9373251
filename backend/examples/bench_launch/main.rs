//! Launch benchmark (not a test): starts `daas serve` as an operator would, on a fresh
//! database with the demo data, launches N trivial sessions at once through the API (real
//! sandboxes, real processes, each answering HTTP on its port), waits until all are
//! `running`, stops them all and waits until all are `stopped`. Prints launches per second.
//!
//! `make bench-launch` (N from `BENCH_SESSIONS`, default 50; `DATABASE_URL` names the
//! server, a database of its own is created and dropped).

use daas::sessions::lifecycle::SessionState;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let server_url = std::env::var("DATABASE_URL").map_err(|_| anyhow::anyhow!("set DATABASE_URL"))?;
    let name = format!("daas_bench_{}", std::process::id());
    let (server, _) = server_url.rsplit_once('/').expect("a URL with a database");
    let url = format!("{server}/{name}");
    let mut admin = PgConnection::connect(&server_url).await?;
    admin.execute(format!("create database {name}").as_str()).await?;

    let work = tempfile::tempdir()?;
    let result = run(n, &url, work.path()).await;
    // Sessions outlive daas by design: after a failure, kill what is left.
    daas::runtime::local::kill_all(&work.path().join("sessions"));
    admin.execute(format!("drop database {name} with (force)").as_str()).await?;
    result
}

async fn run(n: usize, url: &str, work: &std::path::Path) -> anyhow::Result<()> {
    let db = PgPool::connect(url).await?;
    daas::db::MIGRATOR.run(&db).await?;
    daas::demo::load_if_empty(&db, &work.join("data")).await?;
    let image: uuid::Uuid = sqlx::query_scalar(
        "insert into images (name, kind, reference, protocol, default_cpu_millis, default_memory_mib, local_command)
         values ('Trivial', 'notebook', 'example/trivial:1', 'http', 100, 64, $1) returning id",
    )
    .bind(json!({"argv": ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]}))
    .fetch_one(&db)
    .await?;
    let flavour: uuid::Uuid = sqlx::query_scalar("select id from flavours where name = 'small'").fetch_one(&db).await?;
    // bob's proposal has no proposal quota; the admin role has no limits.
    let experiment: uuid::Uuid =
        sqlx::query_scalar("select id from experiments where code = 'S0201'").fetch_one(&db).await?;
    let admin_id = daas::auth::users::find(&db, "admin").await?;
    let token = daas::auth::tokens::create(&db, admin_id, "bench", None).await?.1;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let daas = Server(
        Command::new(
            std::env::var("DAAS_BIN")
                .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/debug/daas").into()),
        )
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-root")
        .arg(work.join("data"))
        .arg("--sessions-dir")
        .arg(work.join("sessions"))
        .arg("--homes-dir")
        .arg(work.join("homes"))
        .args(["--reconcile-interval", "1s"])
        .env("DATABASE_URL", url)
        .env("DAAS_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?,
    );
    let start = Instant::now();
    while http(port, "GET", "/readyz", &token, None).await.map(|r| r.0).ok() != Some(200) {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "daas did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let body = json!({"image": image, "flavour": flavour, "experiment": experiment});
    let started = Instant::now();
    let launches = (0..n).map(|_| {
        let (token, body) = (token.clone(), body.clone());
        tokio::spawn(async move { http(port, "POST", "/api/v1/sessions", &token, Some(body)).await })
    });
    let mut ids = Vec::new();
    for launch in launches {
        let (status, body) = launch.await??;
        anyhow::ensure!(status == 201, "launch answered {status}: {body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let accepted = started.elapsed();
    wait_all(port, &token, &ids, SessionState::Running).await?;
    let running = started.elapsed();

    let stopping = Instant::now();
    for id in &ids {
        let (status, _) = http(port, "DELETE", &format!("/api/v1/sessions/{id}"), &token, None).await?;
        anyhow::ensure!(status == 202, "stop answered {status}");
    }
    wait_all(port, &token, &ids, SessionState::Stopped).await?;
    let stopped = stopping.elapsed();
    drop(daas);

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("{n} sessions on {cores} cores (local runtime: bubblewrap sandbox + Python HTTP server each)");
    println!("  all launches answered 201 in {:.2} s", accepted.as_secs_f64());
    println!(
        "  all running (port answering) after {:.2} s: {:.1} launches/s",
        running.as_secs_f64(),
        n as f64 / running.as_secs_f64()
    );
    println!(
        "  all stopped (no process left) after {:.2} s: {:.1} stops/s",
        stopped.as_secs_f64(),
        n as f64 / stopped.as_secs_f64()
    );
    println!("  (JupyterHub publishes about 13 spawns/s with mock spawners on 32 cores)");
    Ok(())
}

/// Kills `daas serve` when dropped, even on an error.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_all(port: u16, token: &str, ids: &[String], state: SessionState) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let (_, sessions) = http(port, "GET", "/api/v1/sessions?all=true", token, None).await?;
        let states: Vec<SessionState> = sessions
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| ids.iter().any(|id| s["id"] == id.as_str()))
            .map(|s| serde_json::from_value(s["state"].clone()).unwrap())
            .collect();
        let failed = serde_json::json!(SessionState::Failed);
        if let Some(bad) = sessions.as_array().unwrap().iter().find(|s| s["state"] == failed) {
            anyhow::bail!("a session failed: {}", bad["failure_reason"]);
        }
        if states.len() == ids.len() && states.iter().all(|s| *s == state) {
            return Ok(());
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(300), "not all {state} after 300 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// HTTP/1.0 on loopback: the status and the JSON body.
async fn http(port: u16, method: &str, path: &str, token: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = response.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    Ok((status, json))
}
