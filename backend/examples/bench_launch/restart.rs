//! daas restarted with many sessions running: how soon it is ready, and how soon every
//! session answers through its proxy again (the cookies the browsers hold stay valid).
//!
//! The sessions are real sandboxed processes of the local runtime, each the launch
//! benchmark's trivial Python HTTP server (about 10 GB for 1,000 of them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{counts, load_average, Daas, Latencies, Setup};
use daas::sessions::lifecycle::SessionState::{Failed, Running};

/// Requests in flight at once while launching and checking.
const AT_ONCE: usize = 32;

pub async fn run(url: &str, work: &std::path::Path) -> anyhow::Result<()> {
    let n = counts("1000")?[0];
    let setup = Setup::new(url, work, json!(["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"])).await?;
    let mut daas = Daas::start(&setup, work, "local").await?;
    println!("Restart with {n} sessions running; load average before: {}", load_average());

    let started = Instant::now();
    let ids = in_turn(n, |_| {
        let daas = &daas;
        async move {
            let (status, body) = daas.api(reqwest::Method::POST, "/api/v1/sessions", Some(&daas.launch)).await?;
            anyhow::ensure!(status == 201, "launch answered {status}: {body}");
            anyhow::Ok(body["id"].as_str().unwrap_or_default().to_string())
        }
    })
    .await?;
    let ids = Arc::new(ids);
    loop {
        let states = in_turn(n, |i| {
            let (daas, ids) = (&daas, ids.clone());
            async move {
                let (_, session) =
                    daas.api(reqwest::Method::GET, &format!("/api/v1/sessions/{}", ids[i]), None).await?;
                anyhow::ensure!(session["state"] != json!(Failed), "a session failed: {}", session["failure_reason"]);
                anyhow::Ok(session["state"] == json!(Running))
            }
        })
        .await?;
        if states.iter().all(|&running| running) {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "not all running after 600 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("  {n} sessions running after {:.1} s", started.elapsed().as_secs_f64());
    let entries = in_turn(n, |i| {
        let (daas, ids) = (&daas, ids.clone());
        async move { daas.notebook_cookie(&ids[i]).await }
    })
    .await?;
    check_all(&daas, &entries).await?;

    let restarted = daas.restart().await?;
    let ready = daas.wait_ready(restarted).await?;
    let mut first = check_all(&daas, &entries).await?;
    let answering = restarted.elapsed();
    println!("\n## Restart with {n} sessions running (local runtime, real sandboxes)\n");
    println!("| figure | daas | aim |");
    println!("| --- | --- | --- |");
    println!("| s from start until ready (every session adopted) | {:.3} | |", ready.as_secs_f64());
    println!("| s from start until all {n} answer through the proxy | {:.3} | < 2 |", answering.as_secs_f64());
    println!("| first request per session after restart, p50 ms | {:.2} | |", first.percentile_ms(50.0));
    println!("| first request per session after restart, p99 ms | {:.2} | |", first.percentile_ms(99.0));
    println!("\nload average after: {}", load_average());

    for id in ids.iter() {
        let (status, _) = daas.api(reqwest::Method::DELETE, &format!("/api/v1/sessions/{id}"), None).await?;
        anyhow::ensure!(status == 202, "stop answered {status}");
    }
    let stopping = Instant::now();
    loop {
        let (_, live) = daas.api(reqwest::Method::GET, "/api/v1/sessions?all=true&active=true", None).await?;
        if live.as_array().is_some_and(Vec::is_empty) {
            break;
        }
        anyhow::ensure!(stopping.elapsed() < Duration::from_secs(600), "not all stopped after 600 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Every session answers through the proxy with its cookie; the latencies.
async fn check_all(daas: &Daas, entries: &[(String, String)]) -> anyhow::Result<Latencies> {
    let times = in_turn(entries.len(), |i| async move {
        let (host, cookie) = &entries[i];
        let sent = Instant::now();
        anyhow::ensure!(daas.answers(host, cookie).await?, "{host} does not answer through daas");
        anyhow::Ok(sent.elapsed())
    })
    .await?;
    let mut latencies = Latencies::default();
    times.into_iter().for_each(|t| latencies.push(t));
    Ok(latencies)
}

/// `f(0..n)`, `AT_ONCE` at a time, in order.
async fn in_turn<T, F: std::future::Future<Output = anyhow::Result<T>>>(
    n: usize,
    f: impl Fn(usize) -> F,
) -> anyhow::Result<Vec<T>> {
    use futures_util::{StreamExt, TryStreamExt};
    futures_util::stream::iter((0..n).map(f)).buffered(AT_ONCE).try_collect().await
}
