//! The API with a facility's worth of rows (`make bench-db`): `tools/bench/facility.sql`
//! fills the database (`BENCH_SCALE` scales its default of 10,000 users, 100,000 proposals,
//! 1,000,000 past sessions and 100,000 audit events), then requests arrive at fixed rates
//! (`BENCH_RATE`, default 100, 300 and 1,000/s, each for `BENCH_SECONDS`, default 10; a
//! rate the machine cannot sustain ends the run with its first failure), open loop: each
//! latency counts from when the request was due, so a stall is not hidden by requests that
//! were never sent. The routes users hit most, in turn: proposals search and page, proposal
//! detail, my sessions, session detail (alice, on her 20 proposals and their sessions among
//! everyone's); the admin's sessions list once in 100 and their usage report of this month
//! once in 1,000 (each counts or reads a million rows: tens to hundreds of ms a call). Every answer must be a 200 with what
//! the route returns; p50/p99 per route and overall.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{load_average, tools_bench, Daas, Latencies, Setup};

/// The aim: p99 under this at the rate.
const AIM_P99_MS: f64 = 10.0;

pub async fn run(url: &str, work: &std::path::Path) -> anyhow::Result<()> {
    let scale: f64 = std::env::var("BENCH_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let rates = std::env::var("BENCH_RATE").unwrap_or_else(|_| "100,300,1000".into());
    let rates: Vec<f64> = rates.split(',').map(|r| r.trim().parse()).collect::<Result<_, _>>()?;
    let seconds: f64 = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10.0);
    let setup = Setup::new(url, work, json!(["true"])).await?;
    let fill = Instant::now();
    sqlx::raw_sql(&std::fs::read_to_string(tools_bench().join("facility.sql"))?).execute(&setup.db).await?;
    let [users, proposals, sessions, audit] = [10_000.0, 100_000.0, 1_000_000.0, 100_000.0].map(|n| (n * scale) as i32);
    sqlx::query("select daas_bench_fill($1, $2, $3, $4)")
        .bind(users)
        .bind(proposals)
        .bind(sessions)
        .bind(audit)
        .execute(&setup.db)
        .await?;
    sqlx::raw_sql("analyze").execute(&setup.db).await?;
    let counted: (i64, i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from users), (select count(*) from proposals), (select count(*) from sessions),
                (select count(*) from audit_events)",
    )
    .fetch_one(&setup.db)
    .await?;
    println!(
        "Facility: {} users, {} proposals, {} sessions, {} audit events (filled in {:.0} s)",
        counted.0,
        counted.1,
        counted.2,
        counted.3,
        fill.elapsed().as_secs_f64()
    );

    // alice's proposals and sessions, for the routes that name one.
    let alice = daas::auth::users::find(&setup.db, "alice").await?;
    let alice_token = daas::auth::tokens::create(&setup.db, alice, "bench", None).await?.1;
    let proposals: Vec<String> = sqlx::query_scalar(
        "select p.identifier from proposals p join proposal_members m on m.proposal_id = p.id
         where m.user_id = $1 order by p.identifier",
    )
    .bind(alice)
    .fetch_all(&setup.db)
    .await?;
    let sessions: Vec<uuid::Uuid> = sqlx::query_scalar(
        "select s.id from sessions s join session_members m on m.session_id = s.id where m.user_id = $1
         order by s.created_at desc limit 500",
    )
    .bind(alice)
    .fetch_all(&setup.db)
    .await?;
    let alice_sessions: i64 = sqlx::query_scalar("select count(*) from session_members where user_id = $1")
        .bind(alice)
        .fetch_one(&setup.db)
        .await?;
    println!("alice: {} proposals, {alice_sessions} sessions\n", proposals.len());
    anyhow::ensure!(!proposals.is_empty() && !sessions.is_empty(), "the fill gave alice nothing to look at");

    let daas = Arc::new(Daas::start(&setup, work, "fake").await?);
    let routes = Arc::new(Routes { alice: alice_token, admin: setup.token.clone(), proposals, sessions });
    // Warm: every route once, then a second at 50 requests/s.
    for i in 0..Routes::COUNT {
        routes.call(&daas, i, 0).await?;
    }
    load(&daas, &routes, 50.0, Duration::from_secs(1)).await?;
    for rate in rates {
        println!("load average before: {}", load_average());
        let mut measured = match load(&daas, &routes, rate, Duration::from_secs_f64(seconds)).await {
            Ok(measured) => measured,
            // Past what the machine sustains, requests wait for a database connection
            // until daas answers 503: that rate has no figure, and higher ones neither.
            Err(err) => {
                println!("## API at {rate:.0} requests/s: saturated, first failure: {err:#}\n");
                break;
            }
        };
        println!("## API at {rate:.0} requests/s for {seconds:.0} s, open loop (every answer checked)\n");
        println!("| route | requests | p50 ms | p99 ms |");
        println!("| --- | ---: | ---: | ---: |");
        let mut all = Latencies::default();
        for (i, latencies) in measured.iter_mut().enumerate() {
            println!(
                "| {} | {} | {:.2} | {:.2} |",
                Routes::NAMES[i],
                latencies.count(),
                latencies.percentile_ms(50.0),
                latencies.percentile_ms(99.0)
            );
            all.extend(std::mem::take(latencies));
        }
        let p99 = all.percentile_ms(99.0);
        println!("| **all** | {} | {:.2} | {p99:.2} (aim < {AIM_P99_MS}) |", all.count(), all.percentile_ms(50.0));
        println!("\nload average after: {}\n", load_average());
    }
    Ok(())
}

/// The routes of the mix and what they need.
struct Routes {
    alice: String,
    admin: String,
    proposals: Vec<String>,
    sessions: Vec<uuid::Uuid>,
}

impl Routes {
    const COUNT: usize = 7;
    const NAMES: [&'static str; Self::COUNT] = [
        "GET /api/v1/proposals?q= (search)",
        "GET /api/v1/proposals?page= (alice's pages)",
        "GET /api/v1/proposals/{id}",
        "GET /api/v1/sessions (my sessions)",
        "GET /api/v1/sessions/{id}",
        "GET /api/v1/admin/sessions?page= (1 in 100)",
        "GET /api/v1/admin/usage?by=proposal&from= (this month; 1 in 1,000)",
    ];

    /// The route of the `k`th request: the users' routes in turn, the admin's sessions list
    /// once in 100 and their usage report once in 1,000 (a facility has a few admins and
    /// thousands of users; each of the two reads a million rows' worth: see the note).
    fn of(k: usize) -> usize {
        if k % 1000 == 999 {
            Self::COUNT - 1
        } else if k % 100 == 50 {
            Self::COUNT - 2
        } else {
            k % (Self::COUNT - 2)
        }
    }

    /// Request `k` of route `route`: its path and token.
    fn request(&self, route: usize, k: usize) -> (String, &str) {
        let proposal = &self.proposals[k % self.proposals.len()];
        match route {
            0 => (format!("/api/v1/proposals?q={}", &proposal[..proposal.len().min(6)]), &self.alice),
            1 => (format!("/api/v1/proposals?page={}&per_page=5", 1 + k % 4), &self.alice),
            2 => (format!("/api/v1/proposals/{proposal}"), &self.alice),
            3 => ("/api/v1/sessions".into(), &self.alice),
            4 => (format!("/api/v1/sessions/{}", self.sessions[k % self.sessions.len()]), &self.alice),
            5 => (format!("/api/v1/admin/sessions?page={}", 1 + k % 50), &self.admin),
            _ => {
                let month = time::OffsetDateTime::now_utc();
                (
                    format!("/api/v1/admin/usage?by=proposal&from={}-{:02}", month.year(), u8::from(month.month())),
                    &self.admin,
                )
            }
        }
    }

    /// One request, checked: a 200 with a JSON body of the route's shape.
    async fn call(&self, daas: &Daas, route: usize, k: usize) -> anyhow::Result<()> {
        let (path, token) = self.request(route, k);
        let response = daas.http.get(daas.url(&path)).bearer_auth(token).send().await?;
        let status = response.status();
        let body: serde_json::Value = serde_json::from_str(&response.text().await?).unwrap_or_default();
        anyhow::ensure!(status == 200, "{path} answered {status}: {body}");
        let shaped = match route {
            2 | 4 => body["id"].is_string() || body["identifier"].is_string(),
            3 => body.as_array().is_some_and(|a| !a.is_empty()),
            _ => body.is_object() || body.is_array(),
        };
        anyhow::ensure!(shaped, "{path} answered an unexpected body: {body}");
        Ok(())
    }
}

/// Requests at `rate` per second for `duration`, the routes in turn; each one's latency
/// from when it was due, by route.
async fn load(daas: &Arc<Daas>, routes: &Arc<Routes>, rate: f64, duration: Duration) -> anyhow::Result<Vec<Latencies>> {
    let total = (rate * duration.as_secs_f64()) as usize;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for k in 0..total {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        tokio::time::sleep_until(due).await;
        let (daas, routes) = (daas.clone(), routes.clone());
        tasks.push(tokio::spawn(async move {
            let route = Routes::of(k);
            routes.call(&daas, route, k / Routes::COUNT).await?;
            anyhow::Ok((route, due.elapsed()))
        }));
    }
    let mut by_route: Vec<Latencies> = (0..Routes::COUNT).map(|_| Latencies::default()).collect();
    for task in tasks {
        let (route, latency) = task.await??;
        by_route[route].push(latency);
    }
    Ok(by_route)
}
