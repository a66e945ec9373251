//! The reconciler's decisions against the fake runtime, pass by pass, with no waiting on
//! processes: adoption after a restart, orphans, sessions that vanished, a launch a crash
//! left half-done.

use axum::http::Method;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use daas::reconciler::reconcile_once;
use daas::runtime::Observed;

use crate::common::TestApp;
use crate::common::{add_trivial_image, launch_body, wait_state};

async fn launch(app: &TestApp, token: &str) -> Uuid {
    add_trivial_image(&app.db, "Trivial", 0).await;
    let body = launch_body(app, "Trivial", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(token), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    wait_state(app, token, &id, 10, |s: &Value| s["state"] == "running").await;
    // Its launch task watches it a moment longer; until it lets go, a pass leaves it alone.
    let id = id.parse().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.state.lifecycle.launching().contains(&id) {
        assert!(tokio::time::Instant::now() < deadline, "the launch task never let go");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    id
}

async fn state_of(db: &PgPool, id: Uuid) -> (String, Option<String>) {
    sqlx::query_as("select state, failure_reason from sessions where id = $1").bind(id).fetch_one(db).await.unwrap()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_restart_adopts_what_runs_and_starts_nothing_twice(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.token("alice").await;
    let id = launch(&app, &alice).await;
    // A new daas process over the same database and the same running sessions.
    let restarted = daas::AppState::new(app.db.clone(), app.state.config.clone(), app.state.runtime.clone());
    for _ in 0..3 {
        reconcile_once(&restarted).await.unwrap();
    }
    assert_eq!(state_of(&app.db, id).await.0, "running");
    assert_eq!(app.fake().launched().len(), 1, "a running session was started again");
    assert_eq!(app.fake().stopped(), Vec::<Uuid>::new(), "a running session was stopped");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn an_orphan_is_removed_and_a_session_that_vanished_fails_with_the_reason(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.token("alice").await;
    let id = launch(&app, &alice).await;
    let orphan = Uuid::new_v4();
    app.fake().insert(orphan, Observed::Running { endpoint: "fake".into() });
    app.fake().set(id, Observed::Gone);
    reconcile_once(&app.state).await.unwrap();
    let (state, reason) = state_of(&app.db, id).await;
    assert_eq!(state, "failed");
    assert_eq!(reason.as_deref(), Some("its processes are gone (stopped outside daas, or the machine restarted)"));
    // The orphan is stopped; so is what might be left of the vanished session.
    let mut stopped = app.fake().stopped();
    stopped.sort();
    let mut expected = vec![id, orphan];
    expected.sort();
    assert_eq!(stopped, expected);
    assert!(!app.fake().runs(orphan));
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_launch_a_crash_left_before_the_runtime_had_it_is_started_by_the_next_pass(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.token("alice").await;
    // As a crash between the record and the runtime's launch leaves a session: `starting`,
    // no handle, nothing running.
    let id = launch(&app, &alice).await;
    sqlx::query("update sessions set state = 'starting', started_at = null, runtime_handle = null where id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    app.fake().set(id, Observed::Gone);
    let restarted = daas::AppState::new(app.db.clone(), app.state.config.clone(), app.state.runtime.clone());
    reconcile_once(&restarted).await.unwrap();
    wait_state(&app, &alice, &id.to_string(), 10, |s: &Value| s["state"] == "running").await;
    assert_eq!(app.fake().launched().len(), 2);
    assert!(app.fake().runs(id));
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_stop_request_is_finished_by_the_next_pass_even_without_a_wake_up(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.token("alice").await;
    let id = launch(&app, &alice).await;
    // As another daas process would leave it: `stopping`, and nobody woke this one.
    let mut tx = app.db.begin().await.unwrap();
    let asked = daas::sessions::lifecycle::stop::request_stop(&mut tx, id, "Stop requested by a test").await.unwrap();
    tx.commit().await.unwrap();
    assert!(asked);
    reconcile_once(&app.state).await.unwrap();
    assert_eq!(state_of(&app.db, id).await.0, "stopped");
    assert_eq!(app.fake().stopped(), [id]);
    // A second request changes nothing.
    let mut tx = app.db.begin().await.unwrap();
    assert!(!daas::sessions::lifecycle::stop::request_stop(&mut tx, id, "again").await.unwrap());
    tx.rollback().await.unwrap();
}
