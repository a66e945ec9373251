//! The local runtime's crash windows, with real processes: wherever daas stops during a
//! start (killed, or a disk that fails), every process of a session is found again from its
//! folder. A second start adopts it rather than running it twice, the orphan clean-up stops
//! it before it removes its folder, and a start that fails leaves nothing behind.

use axum::http::Method;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use daas::reconciler::reconcile_once;

use crate::common::{add_trivial_image, launch_body, wait_state, TestApp};
use crate::sessions::group_members;

/// Launches a trivial notebook as alice and waits until it runs and its launch task has let
/// go; its id and process group.
async fn running(app: &TestApp, alice: &str) -> (Uuid, i64) {
    add_trivial_image(&app.db, "Trivial", 0).await;
    let body = launch_body(app, "Trivial", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(alice), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id: Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    wait_state(app, alice, &id.to_string(), 30, |s: &Value| s["state"] == "running").await;
    while app.state.lifecycle.launching().contains(&id) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    (id, pgid_of(&app.db, id).await.expect("a handle"))
}

async fn pgid_of(db: &PgPool, id: Uuid) -> Option<i64> {
    let handle: Option<Value> =
        sqlx::query_scalar("select runtime_handle from sessions where id = $1").bind(id).fetch_one(db).await.unwrap();
    handle.and_then(|h| h["pid"].as_i64())
}

/// The process groups of every process that carries the session's id in its environment:
/// how many copies of it run, whatever daas's records say.
fn groups_running(id: Uuid) -> std::collections::BTreeSet<i64> {
    let needle = format!("DAAS_SESSION_ID={id}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
            (rest[0] != "Z").then(|| rest[2].parse().ok()).flatten()
        })
        .collect()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_start_cut_off_before_postgres_had_its_handle_is_adopted_not_run_twice(db: PgPool) {
    let app = TestApp::local(db).await;
    let alice = app.token("alice").await;
    let (id, pgid) = running(&app, &alice).await;
    // What a daas killed after the runtime started the session, before PostgreSQL had its
    // handle, leaves: a start begun, no handle, and the processes running.
    sqlx::query("update sessions set state = 'starting', runtime_handle = null, endpoint = null where id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    let restarted = daas::AppState::new(app.db.clone(), app.state.config.clone(), app.state.runtime.clone());
    reconcile_once(&restarted).await.unwrap();
    wait_state(&app, &alice, &id.to_string(), 30, |s: &Value| s["state"] == "running").await;
    assert_eq!(pgid_of(&app.db, id).await, Some(pgid), "the session was started again, not adopted");
    assert_eq!(groups_running(id), [pgid].into(), "a second copy of the session runs");
    app.stop_everything().await;
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn the_orphan_clean_up_stops_what_runs_before_it_removes_the_folder(db: PgPool) {
    let app = TestApp::local(db).await;
    let alice = app.token("alice").await;
    let (id, pgid) = running(&app, &alice).await;
    let folder = app.data_path().join(format!("_runtime/sessions/{id}"));
    // A session PostgreSQL says ended while its processes run on (a start that failed
    // after its processes began used to leave this).
    sqlx::query(
        "update sessions set state = 'failed', failure_reason = 'could not start', stopped_at = now(),
                runtime_handle = null where id = $1",
    )
    .bind(id)
    .execute(&app.db)
    .await
    .unwrap();
    assert!(!group_members(pgid).is_empty());
    reconcile_once(&app.state).await.unwrap();
    assert_eq!(groups_running(id), Default::default(), "the orphan's processes run on");
    assert!(!folder.exists(), "the orphan's folder is left");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_start_the_disk_refuses_fails_naming_the_path_and_leaves_nothing(db: PgPool) {
    let app = TestApp::local(db).await;
    let alice = app.token("alice").await;
    add_trivial_image(&app.db, "Trivial", 0).await;
    // The logs folder is a file: the start fails late, once most of the session's folder
    // is written.
    let sessions = app.data_path().join("_runtime/sessions");
    std::fs::remove_dir_all(sessions.join("logs")).unwrap();
    std::fs::write(sessions.join("logs"), b"").unwrap();
    let body = launch_body(&app, "Trivial", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    let id: Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    let failed = wait_state(&app, &alice, &id.to_string(), 30, |s: &Value| s["state"] == "failed").await;
    let reason = failed["failure_reason"].as_str().unwrap();
    let log = sessions.join(format!("logs/{id}.log"));
    assert!(
        reason.starts_with(&format!("could not start: cannot open the session's log {}: ", log.display())),
        "{reason}"
    );
    assert_eq!(groups_running(id), Default::default(), "a process of the failed start runs");
    assert!(!sessions.join(id.to_string()).exists(), "the failed start left its folder half-written");
}
