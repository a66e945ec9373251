//! Usage figures against a fixture computed by hand, with sessions that span month
//! boundaries (UTC).

use axum::http::Method;
use serde_json::Value;
use sqlx::PgPool;

use crate::admin::insert_session;
use crate::common::{add_shell_image, launch_body, wait_state, TestApp};

/// The fixture, in the demo facility:
/// - S1 alice, S0011 (20180101, BL11), Xfce, 2 CPUs: 31 Jan 22:00 to 1 Feb 03:00, so
///   2 h in January (4 CPU-h) and 3 h in February (6 CPU-h).
/// - S2 bob, S0201 (I-20191502, BL04), Tomography, 8 CPUs and 1 GPU: 10 Feb 10:00 to
///   11:30, so 12 CPU-h and 1.5 GPU-h in February.
/// - S3 alice, S0101 (20190315, BL02), JupyterLab, 1 CPU and 2 GPUs: 15 Jan 00:00 to
///   1 Mar 00:00, so 17 days (408 h: 408 CPU-h, 816 GPU-h) in January, 28 days (672 h:
///   672 CPU-h, 1344 GPU-h) in February, nothing in March.
/// - S4 carol, S0011, Xfce, 3 CPUs, still running since 28 Feb 23:00: 1 h (3 CPU-h) in
///   February, and on every month since (March: 31 days, 2232 CPU-h).
/// - S5 dave, never started (failed at launch): nothing.
async fn fixture(db: &PgPool) {
    insert_session(
        db,
        "alice",
        "S0011",
        "Xfce desktop",
        "stopped",
        (2000, 0),
        (Some("2026-01-31T22:00:00Z"), Some("2026-02-01T03:00:00Z")),
    )
    .await;
    insert_session(
        db,
        "bob",
        "S0201",
        "Tomography reconstruction",
        "stopped",
        (8000, 1),
        (Some("2026-02-10T10:00:00Z"), Some("2026-02-10T11:30:00Z")),
    )
    .await;
    insert_session(
        db,
        "alice",
        "S0101",
        "JupyterLab",
        "stopped",
        (1000, 2),
        (Some("2026-01-15T00:00:00Z"), Some("2026-03-01T00:00:00Z")),
    )
    .await;
    insert_session(db, "carol", "S0011", "Xfce desktop", "running", (3000, 0), (Some("2026-02-28T23:00:00Z"), None))
        .await;
    sqlx::query(
        "insert into sessions (owner_id, experiment_id, image_id, flavour_id, kind, state, cpu_millis, memory_mib,
                               runtime, stopped_at, expires_at, failure_reason)
         select u.id, e.id, i.id, f.id, 'desktop', 'failed', 2000, 1024, 'local', now(), now() + interval '1 day', 'no GPU free'
         from users u, experiments e, images i, flavours f
         where u.username = 'dave' and e.code = 'S0301' and i.name = 'Xfce desktop' and f.name = 'small'",
    )
    .execute(db)
    .await
    .unwrap();
}

/// (month, key, sessions, CPU-hours, GPU-hours) of each row.
fn rows(body: &Value) -> Vec<(String, String, i64, f64, f64)> {
    body.as_array()
        .unwrap_or_else(|| panic!("not a list: {body}"))
        .iter()
        .map(|r| {
            (
                r["month"].as_str().unwrap().to_owned(),
                r["key"].as_str().unwrap().to_owned(),
                r["sessions"].as_i64().unwrap(),
                r["cpu_hours"].as_f64().unwrap(),
                r["gpu_hours"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn row(month: &str, key: &str, sessions: i64, cpu: f64, gpu: f64) -> (String, String, i64, f64, f64) {
    (month.into(), key.into(), sessions, cpu, gpu)
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn usage_matches_the_hand_computed_fixture(db: PgPool) {
    let app = TestApp::new(db).await;
    fixture(&app.db).await;
    // The split must not depend on the database session's time zone.
    sqlx::query("alter database current_database() set timezone = 'Pacific/Auckland'").execute(&app.db).await.ok();
    let admin = app.token("admin").await;
    let get = |q: &str| {
        let (app, admin, uri) = (&app, &admin, format!("/api/v1/admin/usage{q}"));
        async move { app.request(Method::GET, &uri, Some(admin), None).await }
    };

    let by_month = get("?from=2026-01&to=2026-03").await;
    assert_eq!(by_month.status, 200, "{}", by_month.text);
    assert_eq!(
        rows(&by_month.body),
        [
            row("2026-01", "2026-01", 2, 412.0, 816.0),
            row("2026-02", "2026-02", 2, 693.0, 1345.5),
            row("2026-03", "2026-03", 0, 2232.0, 0.0)
        ]
    );
    assert_eq!(
        rows(&get("?by=user&from=2026-01&to=2026-02").await.body),
        [
            row("2026-01", "alice", 2, 412.0, 816.0),
            row("2026-02", "alice", 0, 678.0, 1344.0),
            row("2026-02", "bob", 1, 12.0, 1.5),
            row("2026-02", "carol", 1, 3.0, 0.0),
        ]
    );
    assert_eq!(
        rows(&get("?by=beamline&from=2026-01&to=2026-02").await.body),
        [
            row("2026-01", "BL02", 1, 408.0, 816.0),
            row("2026-01", "BL11", 1, 4.0, 0.0),
            row("2026-02", "BL02", 0, 672.0, 1344.0),
            row("2026-02", "BL04", 1, 12.0, 1.5),
            row("2026-02", "BL11", 1, 9.0, 0.0),
        ]
    );
    assert_eq!(
        rows(&get("?by=proposal&from=2026-02&to=2026-02").await.body),
        [
            row("2026-02", "20180101", 1, 9.0, 0.0),
            row("2026-02", "20190315", 0, 672.0, 1344.0),
            row("2026-02", "I-20191502", 1, 12.0, 1.5)
        ]
    );
    assert_eq!(
        rows(&get("?by=image&from=2026-01&to=2026-01").await.body),
        [row("2026-01", "JupyterLab", 1, 408.0, 816.0), row("2026-01", "Xfce desktop", 1, 4.0, 0.0)]
    );
    // The running session counts up to now, month by month.
    let all = rows(&get("?by=user").await.body);
    assert!(all.iter().any(|r| r.0 == "2026-10" && r.1 == "carol" && r.3 == 31.0 * 24.0 * 3.0), "{all:?}");

    for (q, field) in [("?by=planet", "by"), ("?from=2026-13", "from"), ("?from=2026-03&to=2026-01", "to")] {
        let r = get(q).await;
        assert_eq!((r.status.as_u16(), r.body["error"]["field"].as_str()), (400, Some(field)), "{q}: {}", r.text);
    }
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn usage_exports_as_csv_and_draws_a_chart(db: PgPool) {
    let app = TestApp::new(db).await;
    fixture(&app.db).await;
    let admin = app.token("admin").await;
    let csv =
        app.request(Method::GET, "/api/v1/admin/usage.csv?by=user&from=2026-02&to=2026-02", Some(&admin), None).await;
    assert_eq!(csv.status, 200, "{}", csv.text);
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(csv.headers["content-disposition"].to_str().unwrap().contains("usage-by-user.csv"));
    assert_eq!(
        csv.text,
        "month,user,sessions,cpu_hours,gpu_hours\n\
         2026-02,alice,0,678.000,1344.000\n\
         2026-02,bob,1,12.000,1.500\n\
         2026-02,carol,1,3.000,0.000\n"
    );

    let svg = app
        .request(
            Method::GET,
            "/api/v1/admin/usage.svg?by=user&from=2026-01&to=2026-02&metric=gpu_hours",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(svg.status, 200, "{}", svg.text);
    assert!(svg.headers["content-type"].to_str().unwrap().starts_with("image/svg+xml"));
    assert!(svg.text.starts_with("<svg") && svg.text.contains("GPU-hours by user"), "{}", svg.text);
    // alice: 816 + 1344 GPU-hours over both months, the longest bar.
    assert!(svg.text.contains("<title>alice: 2160</title>"), "{}", svg.text);
    assert!(svg.text.contains("<title>bob: 1.50</title>"), "{}", svg.text);
    let bars = svg.text.matches("<rect").count();
    assert_eq!(bars, 3);
    let r = app.request(Method::GET, "/api/v1/admin/usage.svg?metric=joules", Some(&admin), None).await;
    assert_eq!(r.body["error"]["field"], "metric");
}

/// Issue 14 item 2: a session is accounted from the moment its processes started to the
/// moment they ended, whatever its kind and however it ended, even one that never answered
/// (a job done at once never passes through `running`); one whose start failed is not.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn every_session_that_held_resources_is_accounted_whatever_its_kind_and_ending(db: PgPool) {
    use daas::runtime::Observed;
    let app = TestApp::new(db).await;
    app.start_reconciler();
    sqlx::query("update quotas set max_sessions = 100").execute(&app.db).await.unwrap();
    let kinds = [("Box desktop", "desktop"), ("Box notebook", "notebook"), ("Box job", "job")];
    for (name, kind) in kinds {
        add_shell_image(&app.db, name, kind, "true").await;
    }
    let alice = app.token("alice").await;
    let fake = app.fake();
    let exited = |code: Option<i32>| Observed::Exited { exit_code: code, message: format!("exited: {code:?}") };
    let mut ended = Vec::new();
    for (image, kind) in kinds {
        let path = if kind == "job" { "/api/v1/jobs" } else { "/api/v1/sessions" };
        for ending in ["finished", "failed", "killed", "stopped", "expired"] {
            fake.start_as(match ending {
                "finished" => exited(Some(0)),
                "failed" => exited(Some(1)),
                "killed" => exited(None),
                _ => Observed::Running { endpoint: "fake".into() },
            });
            let body = launch_body(&app, image, "small", "S0011").await;
            let r = app.request(Method::POST, path, Some(&alice), Some(body)).await;
            assert_eq!(r.status, 201, "{}", r.text);
            let id = r.body["id"].as_str().unwrap().to_string();
            if ending == "stopped" || ending == "expired" {
                wait_state(&app, &alice, &id, 10, |s: &Value| s["state"] == "running").await;
            }
            if ending == "stopped" {
                let stop = app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&alice), None).await;
                assert_eq!(stop.status, 202, "{}", stop.text);
            }
            if ending == "expired" {
                sqlx::query("update sessions set expires_at = now() - interval '1 second' where id = $1::uuid")
                    .bind(&id)
                    .execute(&app.db)
                    .await
                    .unwrap();
            }
            let done = |s: &Value| s["state"] == "stopped" || s["state"] == "failed";
            let session = wait_state(&app, &alice, &id, 10, done).await;
            assert!(session["started_at"].is_string(), "{image} {ending}: not accounted: {session}");
            assert!(session["stopped_at"].as_str() >= session["started_at"].as_str(), "{image} {ending}: {session}");
            ended.push(id);
        }
    }
    // A start the runtime refused held nothing.
    fake.refuse_launches(Some("no node is free"));
    let body = launch_body(&app, "Box job", "small", "S0011").await;
    let id = app.request(Method::POST, "/api/v1/jobs", Some(&alice), Some(body)).await.body["id"].clone();
    let refused = wait_state(&app, &alice, id.as_str().unwrap(), 10, |s: &Value| s["state"] == "failed").await;
    assert!(refused["started_at"].is_null(), "{refused}");

    let admin = app.token("admin").await;
    let usage = app.request(Method::GET, "/api/v1/admin/usage?by=user", Some(&admin), None).await;
    assert_eq!(usage.status, 200, "{}", usage.text);
    let alice_rows: Vec<&Value> = usage.body.as_array().unwrap().iter().filter(|r| r["key"] == "alice").collect();
    let sessions: i64 = alice_rows.iter().map(|r| r["sessions"].as_i64().unwrap()).sum();
    assert_eq!(sessions, ended.len() as i64, "{}", usage.text);
}
