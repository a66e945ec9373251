//! `/api/v1/sessions` and `/api/v1/jobs`, and the reconciler: the lifecycle's logic on the
//! fake runtime, scripted; and, with the real local runtime, what only real processes
//! prove (bubblewrap sandboxes, JupyterLab, Xvnc, jobs, a killed process).

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use daas::proxy::upstream::connect;
use daas::runtime::Observed;

use crate::common::{add_shell_image, add_trivial_image, id_of, launch_body, wait_state, TestApp};

fn is(state: &'static str) -> impl Fn(&Value) -> bool {
    move |s| s["state"] == state
}

#[derive(sqlx::FromRow)]
struct Runtime {
    runtime_handle: Option<Value>,
    endpoint: Option<String>,
    secret: Option<String>,
}

async fn runtime_of(db: &PgPool, id: &str) -> Runtime {
    sqlx::query_as("select runtime_handle, endpoint, secret from sessions where id = $1::uuid")
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Processes (not zombies) in a process group.
pub fn group_members(pgid: i64) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
            rest[0] != "Z" && rest[2].parse::<i64>().ok() == Some(pgid)
        })
        .collect()
}

async fn counts(db: &PgPool) -> (i64, i64, i64) {
    sqlx::query_as(
        "select (select count(*) from sessions), (select count(*) from session_events), (select count(*) from jobs)",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn bad_launches_are_4xx_and_write_nothing(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.token("alice").await;
    let good = launch_body(&app, "JupyterLab", "small", "S0011").await;
    let post = |body: Value| app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body));

    let mut unknown_image = good.clone();
    unknown_image["image"] = json!(Uuid::new_v4());
    let r = post(unknown_image).await;
    assert_eq!((r.status, r.error_code()), (StatusCode::BAD_REQUEST, "invalid"));
    assert_eq!(r.body["error"]["field"], "image");

    let mut job_image = good.clone();
    job_image["image"] = json!(id_of(&app.db, "images", "name", "Tomography reconstruction").await);
    let r = post(job_image).await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("POST /api/v1/jobs"), "{}", r.text);

    sqlx::query("update flavours set allowed_roles = '{scientist,admin}' where name = 'gpu'")
        .execute(&app.db)
        .await
        .unwrap();
    let mut gpu = good.clone();
    gpu["flavour"] = json!(id_of(&app.db, "flavours", "name", "gpu").await);
    let r = post(gpu).await;
    assert_eq!((r.status, r.error_code()), (StatusCode::FORBIDDEN, "forbidden"));
    assert!(r.body["error"]["message"].as_str().unwrap().contains("gpu"), "{}", r.text);

    // S0201 belongs to bob's proposal.
    let mut foreign = good.clone();
    foreign["experiment"] = json!(id_of(&app.db, "experiments", "code", "S0201").await);
    let r = post(foreign).await;
    assert_eq!((r.status, r.error_code()), (StatusCode::BAD_REQUEST, "invalid"));
    assert_eq!(r.body["error"]["field"], "experiment");

    let mut not_uuid = good.clone();
    not_uuid["flavour"] = json!("small");
    assert_eq!(post(not_uuid).await.status, 400);
    assert_eq!(post(json!({"image": good["image"]})).await.status, 400);
    let mut extra = good.clone();
    extra["gpus"] = json!(4);
    assert_eq!(post(extra).await.status, 400);

    let raw = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/api/v1/sessions")
        .header("authorization", format!("Bearer {alice}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{\"image\": "))
        .unwrap();
    let r = app.raw(raw).await;
    assert_eq!((r.status, r.error_code()), (StatusCode::BAD_REQUEST, "invalid"));
    assert_eq!(app.request(Method::POST, "/api/v1/sessions", None, Some(good)).await.status, 401);

    assert_eq!(counts(&app.db).await, (0, 0, 0), "a refused launch wrote rows");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn fifty_concurrent_launches_against_a_quota_of_two_admit_two(db: PgPool) {
    let app = TestApp::new(db).await;
    add_trivial_image(&app.db, "Trivial", 0).await;
    let alice = app.token("alice").await;
    let body = launch_body(&app, "Trivial", "small", "S0011").await;
    // The user role's quota in the demo is 2 sessions.
    let launches = (0..50).map(|_| app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body.clone())));
    let answers = futures_util::future::join_all(launches).await;
    let created = answers.iter().filter(|r| r.status == 201).count();
    let refused: Vec<_> = answers.iter().filter(|r| r.status == 409).collect();
    assert_eq!((created, refused.len()), (2, 48), "{:?}", answers.iter().map(|r| &r.text).collect::<Vec<_>>());
    for r in refused {
        assert_eq!(r.body["error"]["message"], "over quota: 2 of 2 sessions in use");
    }
    let active: i64 =
        sqlx::query_scalar("select count(*) from sessions where state <> 'failed'").fetch_one(&app.db).await.unwrap();
    assert_eq!(active, 2);

    // A user override (field by field) and the proposal total.
    let alice_id = id_of(&app.db, "users", "username", "alice").await;
    sqlx::query("insert into quotas (scope, user_id, max_sessions) values ('user', $1, 3)")
        .bind(alice_id)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("update quotas set max_sessions = 3 where scope = 'proposal'").execute(&app.db).await.unwrap();
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body.clone())).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let carol = app.token("carol").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&carol), Some(body.clone())).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["error"]["message"], "over quota: proposal 20180101: 3 of 3 sessions in use");
    app.stop_everything().await;
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn other_users_cannot_see_stop_or_follow_a_session(db: PgPool) {
    let app = TestApp::new(db).await;
    add_trivial_image(&app.db, "Trivial", 0).await;
    let alice = app.token("alice").await;
    let body = launch_body(&app, "Trivial", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["state"], "starting");
    assert_eq!(r.body["owner"], "alice");
    assert_eq!(r.body["role"], "owner");
    assert_eq!((r.body["proposal"].as_str(), r.body["experiment"].as_str()), (Some("20180101"), Some("S0011")));
    assert!(r.body.get("secret").is_none() && !r.text.contains("runtime_handle"), "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();

    // carol is in the same proposal, but not in the session.
    for user in ["bob", "carol"] {
        let token = app.token(user).await;
        for (method, uri) in [
            (Method::GET, format!("/api/v1/sessions/{id}")),
            (Method::DELETE, format!("/api/v1/sessions/{id}")),
            (Method::GET, format!("/api/v1/sessions/{id}/events")),
            (Method::GET, format!("/api/v1/jobs/{id}")),
        ] {
            let r = app.request(method.clone(), &uri, Some(&token), None).await;
            assert_eq!((r.status, r.error_code()), (StatusCode::NOT_FOUND, "not_found"), "{user} {method} {uri}");
        }
        assert_eq!(app.get("/api/v1/sessions", Some(&token)).await.body, json!([]));
    }
    let mine = app.get("/api/v1/sessions", Some(&alice)).await;
    assert_eq!(mine.body.as_array().unwrap().len(), 1);
    let admin = app.token("admin").await;
    assert_eq!(app.get(&format!("/api/v1/sessions/{id}"), Some(&admin)).await.status, 200);
    assert_eq!(app.get("/api/v1/sessions?all=true", Some(&admin)).await.body.as_array().unwrap().len(), 1);
    assert_eq!(app.get("/api/v1/sessions?all=true", Some(&alice)).await.body.as_array().unwrap().len(), 1);
    assert_eq!(app.get("/api/v1/sessions?kind=vm", Some(&alice)).await.status, 400);
    let state: String = sqlx::query_scalar("select state from sessions").fetch_one(&app.db).await.unwrap();
    assert_ne!(state, "stopping", "bob's DELETE changed the session");

    // Invited as a guest, bob sees and follows it, but may not stop it.
    sqlx::query("insert into session_members (session_id, user_id, role) select $1::uuid, id, 'guest' from users where username = 'bob'")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    let bob = app.token("bob").await;
    let seen = app.get(&format!("/api/v1/sessions/{id}"), Some(&bob)).await;
    assert_eq!((seen.status, seen.body["role"].as_str()), (StatusCode::OK, Some("guest")));
    let mut events = app.stream(&format!("/api/v1/sessions/{id}/events"), &bob, None).await;
    assert_eq!(events.next_event(Duration::from_secs(5)).await.unwrap()["state"], "requested");
    let r = app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&bob), None).await;
    assert_eq!((r.status, r.error_code()), (StatusCode::FORBIDDEN, "forbidden"));
    app.stop_everything().await;
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_notebook_runs_answers_and_stops_without_leftovers(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let alice = app.token("alice").await;
    let body = launch_body(&app, "JupyterLab", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    let running = wait_state(&app, &alice, &id, 90, |s| s["state"] != "starting").await;
    assert_eq!(running["state"], "running", "{running}");
    assert!(running["seconds_left"].as_i64().unwrap() > 23 * 3600);

    let rt = runtime_of(&app.db, &id).await;
    let endpoint = rt.endpoint.unwrap();
    let secret = rt.secret.unwrap();
    // The server answers under its base URL with daas's token, in the header daas sends
    // (daas's Jupyter settings take it from there alone), and refuses without it.
    let contents = format!("/sessions/{id}/api/contents");
    let (status, body) = http(&endpoint, &contents, &format!("Authorization: token {secret}\r\n")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"type\": \"directory\"") || body.contains("\"type\":\"directory\""), "{body}");
    assert_eq!(http(&endpoint, &contents, "").await.0, 403);
    assert_eq!(http(&endpoint, &format!("{contents}?token={secret}"), "").await.0, 403);

    let pgid = rt.runtime_handle.unwrap()["pid"].as_i64().unwrap();
    assert!(!group_members(pgid).is_empty());
    let r = app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&alice), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["state"], "stopping");
    let stopped = wait_state(&app, &alice, &id, 30, is("stopped")).await;
    assert!(stopped["stopped_at"].is_string());
    assert_eq!(group_members(pgid), Vec::<i32>::new(), "processes of the notebook remain");
    assert!(connect(&endpoint).await.is_err(), "its socket still answers");
    // Stopping again changes nothing.
    let r = app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&alice), None).await;
    assert_eq!((r.status, r.body["state"].as_str()), (StatusCode::OK, Some("stopped")));
}

/// A plain HTTP/1.0 GET: status and body.
async fn http(endpoint: &str, path: &str, headers: &str) -> (u16, String) {
    let mut stream = connect(endpoint).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut response)).await.unwrap().unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// VNC authentication (RFB 3.8, security type 2) against `endpoint`: true when the server
/// accepts `password`.
async fn vnc_login(endpoint: &str, password: &str) -> bool {
    use des::cipher::{BlockEncrypt, KeyInit};
    let mut s = connect(endpoint).await.unwrap();
    let mut greeting = [0u8; 12];
    s.read_exact(&mut greeting).await.unwrap();
    assert!(greeting.starts_with(b"RFB 003.00"), "{greeting:?}");
    s.write_all(b"RFB 003.008\n").await.unwrap();
    let count = s.read_u8().await.unwrap() as usize;
    let mut types = vec![0u8; count];
    s.read_exact(&mut types).await.unwrap();
    assert_eq!(types, [2], "only VNC authentication is offered");
    s.write_u8(2).await.unwrap();
    let mut challenge = [0u8; 16];
    s.read_exact(&mut challenge).await.unwrap();
    // The key is the password with the bits of each byte reversed (VNC's DES quirk).
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password.bytes()) {
        *k = p.reverse_bits();
    }
    let cipher = des::Des::new_from_slice(&key).unwrap();
    for block in challenge.chunks_mut(8) {
        cipher.encrypt_block(des::cipher::generic_array::GenericArray::from_mut_slice(block));
    }
    s.write_all(&challenge).await.unwrap();
    s.read_u32().await.unwrap() == 0
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_desktop_greets_with_rfb_and_takes_only_daas_password(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let alice = app.token("alice").await;
    let body = launch_body(&app, "Xfce desktop", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    let running = wait_state(&app, &alice, &id, 60, |s| s["state"] != "starting").await;
    assert_eq!(running["state"], "running", "{running}");
    let rt = runtime_of(&app.db, &id).await;
    let endpoint = rt.endpoint.unwrap();
    assert!(vnc_login(&endpoint, &rt.secret.unwrap()).await, "daas's password was refused");
    assert!(!vnc_login(&endpoint, "guessed!").await, "a wrong password was accepted");

    let pgid = rt.runtime_handle.unwrap()["pid"].as_i64().unwrap();
    let r = app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&alice), None).await;
    assert_eq!(r.status, 202);
    wait_state(&app, &alice, &id, 30, is("stopped")).await;
    assert_eq!(group_members(pgid), Vec::<i32>::new(), "processes of the desktop remain");
    assert!(connect(&endpoint).await.is_err());
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_job_runs_to_its_exit_code_and_keeps_its_log(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let alice = app.token("alice").await;
    let mut body = launch_body(&app, "Tomography reconstruction", "small", "S0011").await;
    let post = |body: Value| app.request(Method::POST, "/api/v1/jobs", Some(&alice), Some(body));

    for (parameters, field) in [
        (json!({"dataset": "tomo_scan_0001", "algorithm": "magic"}), "parameters.algorithm"),
        (json!({"algorithm": "fbp"}), "parameters.dataset"),
        (json!({"dataset": "tomo_scan_0001", "algorithm": "fbp", "speed": 11}), "parameters.speed"),
        (json!({"dataset": "tomo_scan_0001", "algorithm": "sirt", "iterations": 0}), "parameters.iterations"),
        (json!({"dataset": "tomo_scan_0010", "algorithm": "fbp"}), "parameters.dataset"),
        (json!(["fbp"]), "parameters"),
    ] {
        body["parameters"] = parameters;
        let r = post(body.clone()).await;
        assert_eq!((r.status, r.error_code()), (StatusCode::BAD_REQUEST, "invalid"), "{}", r.text);
        assert_eq!(r.body["error"]["field"], field, "{}", r.text);
    }
    assert_eq!(counts(&app.db).await, (0, 0, 0));

    body["parameters"] = json!({"dataset": "tomo_scan_0001", "algorithm": "fbp"});
    let r = post(body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["kind"], "job");
    assert_eq!(r.body["input_dataset"], "tomo_scan_0001");
    let id = r.body["id"].as_str().unwrap().to_string();
    let done = wait_state(&app, &alice, &id, 60, |s| matches!(s["state"].as_str(), Some("stopped" | "failed"))).await;
    assert_eq!(done["state"], "stopped", "{done}");
    let job = app.get(&format!("/api/v1/jobs/{id}"), Some(&alice)).await;
    assert_eq!(job.body["exit_code"], 0, "{}", job.text);
    assert_eq!(job.text.matches("\"exit_code\"").count(), 1, "a key twice: {}", job.text);
    let logs = app.get(&format!("/api/v1/jobs/{id}/logs"), Some(&alice)).await;
    assert_eq!(logs.status, 200);
    assert!(
        logs.text.contains("/data/tomo_scan_0001/scan.h5: 256 projections of 8 rows x 256 columns"),
        "{}",
        logs.text
    );
    assert!(logs.text.contains("progress 8/8 rows"), "{}", logs.text);
    assert!(!logs.text.contains("warning"), "{}", logs.text);
    let summary = app.data_path().join(format!("_runtime/homes/alice/jobs/{id}/summary.json"));
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    assert_eq!(summary["shape"], json!({"angles": 256, "rows": 8, "columns": 256}));
    // The phantom was simulated about 131.5.
    assert!((summary["centre"].as_f64().unwrap() - 131.5).abs() <= 0.5, "{summary}");

    // A dataset whose files are gone: the job fails with its exit code and its words.
    std::fs::remove_dir_all(app.data_path().join("BL11/20180101/S0011/tomo_scan_0002")).unwrap();
    body["parameters"] = json!({"dataset": "tomo_scan_0002", "algorithm": "fbp"});
    let r = post(body).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let failed = wait_state(&app, &alice, &id, 60, |s| matches!(s["state"].as_str(), Some("stopped" | "failed"))).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let reason = failed["failure_reason"].as_str().unwrap();
    assert_eq!(reason, "Tomography reconstruction failed: /data/tomo_scan_0002: no such dataset folder (exit code 2)");
    assert_eq!(app.get(&format!("/api/v1/jobs/{id}"), Some(&alice)).await.body["exit_code"], 2);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_killed_session_fails_with_the_reason(db: PgPool) {
    let app = TestApp::local(db).await;
    add_trivial_image(&app.db, "Trivial", 0).await;
    app.start_reconciler();
    let alice = app.token("alice").await;
    let body = launch_body(&app, "Trivial", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    wait_state(&app, &alice, &id, 30, is("running")).await;
    let pgid = runtime_of(&app.db, &id).await.runtime_handle.unwrap()["pid"].as_i64().unwrap();
    // Kill the server inside the sandbox, as the OOM killer would.
    let server: Vec<i32> = group_members(pgid)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"python3\0-m\0http.server"))
        })
        .collect();
    assert_eq!(server.len(), 1, "{:?}", group_members(pgid));
    std::process::Command::new("kill").args(["-9", &server[0].to_string()]).status().unwrap();
    let killed = Instant::now();
    let failed = wait_state(&app, &alice, &id, 10, is("failed")).await;
    // The reconciler passes every 300 ms here; the bound leaves room for a loaded machine.
    assert!(killed.elapsed() < Duration::from_secs(5), "not noticed by the next reconcile passes");
    let reason = failed["failure_reason"].as_str().unwrap();
    assert_eq!(reason, "Trivial was killed by SIGKILL", "named by its image, and no output quoted as the cause");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(group_members(pgid), Vec::<i32>::new());
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn events_stream_the_launch_and_the_stop(db: PgPool) {
    let app = TestApp::new(db).await;
    add_trivial_image(&app.db, "Slow", 1).await;
    app.fake().start_as(Observed::Pending { message: "waiting for JupyterLab to answer".into() });
    app.start_reconciler();
    let alice = app.token("alice").await;
    let body = launch_body(&app, "Slow", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let mut events = app.stream(&format!("/api/v1/sessions/{id}/events"), &alice, None).await;
    let mut seen = Vec::new();
    while seen.last().map(|(s, _): &(String, String)| s.as_str()) != Some("running") {
        let event = events.next_event(Duration::from_secs(30)).await.expect("an event before running");
        seen.push((event["state"].as_str().unwrap().to_string(), event["message"].as_str().unwrap().to_string()));
        if event["message"] == "waiting for JupyterLab to answer" {
            app.fake().set(id.parse().unwrap(), Observed::Running { endpoint: "fake".into() });
        }
    }
    assert_eq!(seen[0].0, "requested");
    assert!(seen[0].1.starts_with("Launch requested: Slow on small"), "{seen:?}");
    assert!(seen.iter().any(|(s, m)| s == "starting" && m.contains("waiting for JupyterLab")), "{seen:?}");
    let metrics = app.get("/metrics", None).await.text;
    assert!(metrics.contains("daas_session_launches_total{kind=\"notebook\"} 1"), "{metrics}");
    assert!(metrics.contains("daas_session_start_seconds_bucket{kind=\"notebook\""), "{metrics}");

    let r = app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&alice), None).await;
    assert_eq!(r.status, 202);
    let stopping = events.next_event(Duration::from_secs(10)).await.unwrap();
    assert_eq!(stopping["state"], "stopping");
    let stopped = events.next_event(Duration::from_secs(10)).await.unwrap();
    assert_eq!(stopped["state"], "stopped");
    assert!(events.next_event(Duration::from_secs(5)).await.is_none(), "the stream goes on after stopped");

    // A reconnecting client resumes after the last event it saw.
    let last = stopping["id"].as_i64().unwrap();
    let mut resumed = app.stream(&format!("/api/v1/sessions/{id}/events"), &alice, Some(last)).await;
    assert_eq!(resumed.next_event(Duration::from_secs(5)).await.unwrap()["state"], "stopped");
    assert!(resumed.next_event(Duration::from_secs(5)).await.is_none());
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_pending_launch_can_be_cancelled(db: PgPool) {
    let app = TestApp::new(db).await;
    add_trivial_image(&app.db, "Slow", 30).await;
    app.fake().start_as(Observed::Pending { message: "waiting".into() });
    app.start_reconciler();
    let alice = app.token("alice").await;
    let body = launch_body(&app, "Slow", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    // Wait until the runtime has it, so the cancel has something to stop.
    let start = Instant::now();
    while runtime_of(&app.db, &id).await.runtime_handle.is_none() {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&alice), None).await;
    // Accepted; the answer shows it stopping, or already stopped where the launch task was
    // quicker than the answer (the fake runtime stops at once).
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert!(matches!(r.body["state"].as_str(), Some("stopping" | "stopped")), "{}", r.text);
    wait_state(&app, &alice, &id, 15, is("stopped")).await;
    assert!(!app.fake().runs(id.parse().unwrap()), "the cancelled session still runs");
    let messages: Vec<String> =
        sqlx::query_scalar("select message from session_events where session_id = $1::uuid order by id")
            .bind(&id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert!(messages.iter().any(|m| m == "Launch cancelled by alice"), "{messages:?}");
    let audit: i64 =
        sqlx::query_scalar("select count(*) from audit_events where action = 'session.stop' and object_id = $1")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(audit, 1);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn an_expiring_session_is_warned_then_stopped(db: PgPool) {
    let app = TestApp::new(db).await;
    add_trivial_image(&app.db, "Trivial", 0).await;
    app.start_reconciler();
    let alice = app.token("alice").await;
    let body = launch_body(&app, "Trivial", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    wait_state(&app, &alice, &id, 30, is("running")).await;
    // As if an admin had shortened it: 2 s left, inside the 15 min warning window.
    sqlx::query("update sessions set expires_at = now() + interval '2 seconds' where id = $1::uuid")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    wait_state(&app, &alice, &id, 15, is("stopped")).await;
    let messages: Vec<String> =
        sqlx::query_scalar("select message from session_events where session_id = $1::uuid order by id")
            .bind(&id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    let warnings = messages.iter().filter(|m| m.starts_with("Warning: stops in")).count();
    assert_eq!(warnings, 1, "{messages:?}");
    assert!(messages.iter().any(|m| m == "Stopping: its lifetime has ended"), "{messages:?}");

    // Idle: no activity for longer than the role's idle limit.
    sqlx::query("update quotas set idle_minutes = 30 where role = 'user'").execute(&app.db).await.unwrap();
    let body = launch_body(&app, "Trivial", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    wait_state(&app, &alice, &id, 30, is("running")).await;
    sqlx::query("update sessions set last_activity_at = now() - interval '31 minutes' where id = $1::uuid")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    wait_state(&app, &alice, &id, 15, is("stopped")).await;
    let last: String =
        sqlx::query_scalar("select message from session_events where session_id = $1::uuid and state = 'stopping'")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(last, "Stopping: idle for 30 min");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn the_sandbox_shows_the_experiment_data_read_only_and_nothing_else(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let data_root = app.data_path().display().to_string();
    // The venv and the tools are visible at their paths; nothing else of the repository
    // (the test database below .daas/test) nor of root's home (.cargo).
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().display().to_string();
    let script = format!(
        "echo data: $(ls /data); echo homes: $(ls /home); echo tmp: $(ls -A /tmp); echo uid: $(id -u); \
         echo pids: $(ls /proc | grep -c '^[0-9]'); touch /data/tomo_scan_0001/x 2>/dev/null || echo data read-only; \
         touch ~/mine && echo home writable; test -e {data_root} && echo LEAK data root; \
         test -e {repo}/.daas/test && echo LEAK database; test -e {repo}/Cargo.toml && echo LEAK repository; \
         test -e /root/.cargo && echo LEAK cargo; echo end"
    );
    add_shell_image(&app.db, "Inspect", "job", &script).await;
    let alice = app.token("alice").await;
    let mut body = launch_body(&app, "Inspect", "small", "S0011").await;
    body["parameters"] = json!({});
    let r = app.request(Method::POST, "/api/v1/jobs", Some(&alice), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    let done = wait_state(&app, &alice, &id, 30, |s| matches!(s["state"].as_str(), Some("stopped" | "failed"))).await;
    assert_eq!(done["state"], "stopped", "{done}");
    let logs = app.get(&format!("/api/v1/jobs/{id}/logs"), Some(&alice)).await.text;
    // The venv's scripts name its path in their first line, so it is mounted where it is on
    // the host: a checkout under /tmp shows that path's first folder in the private /tmp.
    let tmp = match Path::new(&repo).strip_prefix("/tmp") {
        Ok(inside) => format!(" {}", inside.iter().next().unwrap().to_string_lossy()),
        Err(_) => String::new(),
    };
    let uid: i32 =
        sqlx::query_scalar("select host_uid from users where username = 'alice'").fetch_one(&app.db).await.unwrap();
    let expected = format!("data: tomo_scan_0001 tomo_scan_0002 tooth\nhomes: alice\ntmp:{tmp}\nuid: {uid}\n");
    assert!(logs.starts_with(&expected), "{logs}");
    let pids: u32 = logs.lines().find_map(|l| l.strip_prefix("pids: ")).unwrap().parse().unwrap();
    assert!(pids < 10, "the sandbox sees {pids} processes: {logs}");
    assert!(logs.contains("data read-only\nhome writable\nend"), "{logs}");
    assert!(!logs.contains("LEAK"), "{logs}");
    assert!(app.data_path().join("_runtime/homes/alice/mine").exists());
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_failure_reason_never_shows_the_session_secret(db: PgPool) {
    let app = TestApp::new(db).await;
    app.fake().start_as(Observed::Pending { message: "waiting".into() });
    app.start_reconciler();
    add_trivial_image(&app.db, "Leaky", 0).await;
    let alice = app.token("alice").await;
    let body = launch_body(&app, "Leaky", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let secret = runtime_of(&app.db, &id).await.secret.unwrap();
    // Jupyter prints its URL with the token before it exits.
    let message = format!("exited with code 3; last output:\nserving at http://127.0.0.1:8888/?token={secret}");
    app.fake().set(id.parse().unwrap(), Observed::Exited { exit_code: Some(3), message });
    let failed = wait_state(&app, &alice, &id, 30, is("failed")).await;
    let reason = failed["failure_reason"].as_str().unwrap();
    assert!(reason.starts_with("Leaky exited with code 3; last output:\nserving at"), "{reason}");
    assert!(reason.contains("?token=[secret]") && !reason.contains(&secret), "{reason}");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_session_that_never_answers_fails_with_the_reason(db: PgPool) {
    let app = TestApp::with_config(db, |config| config.sessions.startup_timeout = Duration::from_secs(2)).await;
    app.fake().start_as(Observed::Pending { message: "waiting for JupyterLab to answer".into() });
    app.start_reconciler();
    add_trivial_image(&app.db, "Mute", 0).await;
    let alice = app.token("alice").await;
    let body = launch_body(&app, "Mute", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let failed = wait_state(&app, &alice, &id, 10, is("failed")).await;
    let reason = failed["failure_reason"].as_str().unwrap();
    assert!(reason.starts_with("did not become ready within 2 s (waiting for JupyterLab to answer)"), "{reason}");
    assert!(reason.ends_with(&format!("last output:\nfake output of {id}")), "{reason}");
    // What is left of it is removed right after the failure is recorded.
    let failed_at = Instant::now();
    while app.fake().runs(id.parse().unwrap()) {
        assert!(failed_at.elapsed() < Duration::from_secs(5), "the failed session still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// On a machine without GPUs (the test runtime is given none), a GPU flavour fails at once
/// with a reason, not after a timeout, and its quota is free again.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_gpu_flavour_fails_at_once_on_a_machine_without_gpus(db: PgPool) {
    let app = TestApp::local(db).await;
    let alice = app.token("alice").await;
    let body = launch_body(&app, "JupyterLab", "gpu", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    let failed = wait_state(&app, &alice, &id, 10, is("failed")).await;
    assert_eq!(failed["failure_reason"], "could not start: the flavour asks for 1 GPU(s) and this machine has none");
    assert_eq!(app.get("/api/v1/quota", Some(&alice)).await.body["used"]["gpus"], 0);
}

/// GPU-hours per month: once the GPU-hours of this month (past GPU sessions here) reach
/// the limit, a launch on a GPU flavour is refused with a 409 naming the quota and writes
/// nothing; a launch without GPUs still passes; under the limit a GPU launch passes. The
/// same for a proposal's limit. The Launch dialog shows the figure beside the limit.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn used_up_gpu_hours_refuse_gpu_launches_only(db: PgPool) {
    let app = TestApp::new(db).await;
    add_trivial_image(&app.db, "Trivial", 0).await;
    let alice = app.token("alice").await;
    let admin = app.token("admin").await;
    // Two GPU sessions of alice that ran 10 hours each and ended an hour ago (as much of
    // them as falls in this month counts, so the test holds on the 1st too).
    let rfc = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let (start, end) = (rfc(now - time::Duration::hours(11)), rfc(now - time::Duration::hours(1)));
    for gpus in [1, 2] {
        crate::admin::insert_session(
            &app.db,
            "alice",
            "S0011",
            "JupyterLab",
            "stopped",
            (8000, gpus),
            (Some(&start), Some(&end)),
        )
        .await;
    }
    let used = app.get("/api/v1/quota", Some(&alice)).await.body["used"]["gpu_hours_month"].as_f64().unwrap();
    assert!((0.0..=30.0).contains(&used), "{used}");
    let reached = used.floor() as i64;
    // Room in every other limit, so that only the GPU-hours can refuse.
    let set = |limit: i64| {
        let (app, admin) = (&app, &admin);
        async move {
            let limits = json!({"max_gpu_hours_month": limit, "max_cpu_millis": 64000, "max_memory_mib": 262144});
            let r = app.request(Method::PUT, "/api/v1/admin/quotas/users/alice", Some(admin), Some(limits)).await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
    };
    set(reached).await;

    let gpu = launch_body(&app, "JupyterLab", "gpu", "S0011").await;
    let before = counts(&app.db).await;
    let audit = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from audit_events").fetch_one(&app.db).await.unwrap()
    };
    let audit_before = audit().await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(gpu.clone())).await;
    assert_eq!((r.status, r.error_code()), (StatusCode::CONFLICT, "conflict"), "{}", r.text);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message
            .starts_with(&format!("over quota: {} of {reached} GPU-hours used this month;", daas::quotas::hours(used))),
        "{message}"
    );
    assert!(message.contains("flavours without GPUs still can"), "{message}");
    assert_eq!((counts(&app.db).await, audit().await), (before, audit_before), "a refused launch wrote");

    // The Launch dialog says so beside the other limits.
    let browser = app.browser("alice").await;
    let image = gpu["image"].as_str().unwrap();
    let page = app
        .browse(Method::GET, &format!("/proposals/20180101/launch?image={image}"), Some(&browser.cookie), None, &[])
        .await;
    assert!(
        page.text.contains(&format!(
            "GPU-hours this month: {} of {reached} used; GPU flavours can be launched again from",
            daas::quotas::hours(used)
        )),
        "{}",
        page.text
    );

    // Without GPUs: launched.
    let small = launch_body(&app, "Trivial", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(small)).await;
    assert_eq!(r.status, 201, "{}", r.text);

    // Under the limit: launched (it then fails, as on a machine without GPUs).
    app.fake().refuse_launches(Some("the flavour asks for 1 GPU(s) and this machine has none"));
    set(reached + 1).await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(gpu.clone())).await;
    assert_eq!(r.status, 201, "{}", r.text);
    wait_state(&app, &alice, r.body["id"].as_str().unwrap(), 10, is("failed")).await;

    // A proposal's GPU-hours count every member's: carol's first GPU launch is refused.
    let r = app
        .request(
            Method::PUT,
            "/api/v1/admin/quotas/proposals/20180101",
            Some(&admin),
            Some(json!({"max_sessions": 6, "max_gpus": 2, "max_gpu_hours_month": reached})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let carol = app.token("carol").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&carol), Some(gpu)).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().starts_with("over quota: proposal 20180101: "), "{}", r.text);
    app.stop_everything().await;
}

/// At shutdown an open event stream ends at once (the client resumes with `Last-Event-ID`
/// from the next daas), instead of holding the restart for the whole grace period.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn event_streams_end_at_once_at_shutdown(db: PgPool) {
    let app = TestApp::new(db).await;
    add_trivial_image(&app.db, "Trivial", 0).await;
    let alice = app.token("alice").await;
    let body = launch_body(&app, "Trivial", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    wait_state(&app, &alice, &id, 10, is("running")).await;
    let mut events = app.stream(&format!("/api/v1/sessions/{id}/events"), &alice, None).await;
    while events.next_event(Duration::from_secs(2)).await.is_some_and(|e| e["state"] != "running") {}
    let closing = Instant::now();
    app.state.events.close();
    assert!(events.next_event(Duration::from_secs(10)).await.is_none());
    assert!(closing.elapsed() < Duration::from_secs(2), "the stream outlived the shutdown: {:?}", closing.elapsed());
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn starts_wait_their_turn_in_order_and_the_timeout_counts_from_the_start(db: PgPool) {
    let app = TestApp::with_config(db, |config| {
        config.sessions.startup_timeout = Duration::from_secs(3);
        config.sessions.max_starting = 1;
    })
    .await;
    let fake = app.fake();
    fake.start_as(Observed::Pending { message: "waiting".into() });
    app.start_reconciler();
    add_trivial_image(&app.db, "Trivial", 0).await;
    sqlx::query("update quotas set max_sessions = 4").execute(&app.db).await.unwrap();
    let alice = app.token("alice").await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let body = launch_body(&app, "Trivial", "small", "S0011").await;
        let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    let progress = |p: &'static str| move |s: &Value| s["progress"] == p;
    wait_state(&app, &alice, &ids[1], 10, progress("queued: next to start")).await;
    wait_state(&app, &alice, &ids[2], 10, progress("queued: 1 ahead")).await;
    wait_state(&app, &alice, &ids[3], 10, progress("queued: 2 ahead")).await;
    // A launch cancelled in the queue ends without ever reaching the runtime.
    let cancel = app.request(Method::DELETE, &format!("/api/v1/sessions/{}", ids[3]), Some(&alice), None).await;
    assert_eq!(cancel.status, 202);
    wait_state(&app, &alice, &ids[3], 10, is("stopped")).await;

    // One start at a time: the second starts when the first answers, and times out 3 s
    // after its own start.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fake.set(ids[0].parse().unwrap(), Observed::Running { endpoint: "fake".into() });
    wait_state(&app, &alice, &ids[0], 10, is("running")).await;
    let failed = wait_state(&app, &alice, &ids[1], 10, is("failed")).await;
    assert!(failed["failure_reason"].as_str().unwrap().starts_with("did not become ready within 3 s"), "{failed}");
    // The third waited longer than the startup timeout, which does not count against it.
    let third = wait_state(&app, &alice, &ids[2], 10, progress("waiting")).await;
    assert_eq!(third["state"], "starting", "{third}");
    let launched: Vec<String> = fake.launched().iter().map(|s| s.session_id.to_string()).collect();
    assert_eq!(launched, ids[..3], "not started one at a time, in order, or a cancelled launch started");
}
