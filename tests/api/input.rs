//! Input daas does not trust: text with NUL characters or bytes that are not UTF-8 is a
//! 400 naming the field before any handler or query runs, and request ids are daas's own.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;
use sqlx::PgPool;

use crate::common::TestApp;

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}")).fetch_one(&app.db).await.unwrap()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_nul_in_the_login_form_is_a_400_naming_the_field(db: PgPool) {
    let app = TestApp::new(db).await;
    let (attempts, events) = (count(&app, "login_attempts").await, count(&app, "audit_events").await);
    for (field, form) in [
        ("username", [("username", "al\0ice"), ("password", "x")]),
        ("password", [("username", "alice"), ("password", "p\0")]),
    ] {
        let response = app.browse(Method::POST, "/login", None, Some(&form), &[]).await;
        assert_eq!(response.status, 400, "{}", response.text);
        assert!(response.text.contains(&format!("{field}: must be UTF-8 text")), "{}", response.text);
    }
    // Bytes that are not UTF-8, sent raw.
    let request = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("username=%FFalice&password=x"))
        .unwrap();
    let response = app.raw(request).await;
    assert_eq!(response.status, 400);
    assert!(response.text.contains("username: must be UTF-8 text"), "{}", response.text);
    assert_eq!(count(&app, "login_attempts").await, attempts, "nothing written");
    assert_eq!(count(&app, "audit_events").await, events, "nothing written");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_nul_in_a_json_body_is_a_400_naming_the_field(db: PgPool) {
    let app = TestApp::new(db).await;
    let token = app.token("alice").await;
    let tokens = count(&app, "api_tokens").await;
    let response = app.request(Method::POST, "/api/v1/tokens", Some(&token), Some(json!({"name": "laptop\0"}))).await;
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(response.body["error"]["code"], "invalid");
    assert_eq!(response.body["error"]["field"], "name", "{}", response.text);
    assert_eq!(count(&app, "api_tokens").await, tokens, "nothing written");
    // Deeper down, the path to the string is named.
    let sam = app.token("sam").await;
    let body = json!({"location": "x", "metadata": {"tags": ["ok", "b\0d"]}});
    let response = app
        .request(Method::POST, "/api/v1/proposals/20180101/experiments/S0011/datasets", Some(&sam), Some(body))
        .await;
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(response.body["error"]["field"], "metadata.tags.1", "{}", response.text);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_nul_in_a_query_string_or_path_is_a_400_naming_the_field(db: PgPool) {
    let app = TestApp::new(db).await;
    let token = app.token("alice").await;
    let response = app.get("/api/v1/proposals?q=%00", Some(&token)).await;
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(response.body["error"]["field"], "q", "{}", response.text);
    let response = app.get("/api/v1/datasets?proposal=%C3%28", Some(&token)).await;
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(response.body["error"]["field"], "proposal", "{}", response.text);
    let response = app.get("/api/v1/proposals/2018%000101", Some(&token)).await;
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(response.body["error"]["field"], "path", "{}", response.text);
    // Unauthenticated pages too: the login page's `next`.
    let page = app.browse(Method::GET, "/login?next=/%00", None, None, &[]).await;
    assert_eq!(page.status, 400);
    // What is fine stays fine.
    assert_eq!(app.get("/api/v1/proposals?q=%C3%A9t%C3%A9", Some(&token)).await.status, 200);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_client_request_id_is_neither_kept_nor_audited(db: PgPool) {
    let app = TestApp::new(db).await;
    let password = "alice's long password";
    sqlx::query("update users set password_hash = $1 where username = 'alice'")
        .bind(daas::auth::password::hash(password).unwrap())
        .execute(&app.db)
        .await
        .unwrap();
    let form = [("username", "alice"), ("password", password)];
    let chosen = "forged-id\" onload=x";
    let response = app.browse(Method::POST, "/login", None, Some(&form), &[("x-request-id", chosen)]).await;
    assert_eq!(response.status, 303, "{}", response.text);
    let answered = response.headers["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(answered, chosen);
    assert!(uuid::Uuid::parse_str(&answered).is_ok(), "daas's own id: {answered}");
    let audited: Option<String> = sqlx::query_scalar("select request_id from audit_events where action = 'user.login'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(audited.as_deref(), Some(answered.as_str()), "the audit row carries daas's id");
    let anywhere: i64 = sqlx::query_scalar("select count(*) from audit_events where request_id like 'forged%'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(anywhere, 0);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_form_that_does_not_fit_is_a_400_page(db: PgPool) {
    let app = TestApp::new(db).await;
    let sam = app.browser("sam").await;
    let admin = app.browser("admin").await;
    for (browser, uri, form) in [
        (&sam, "/proposals/20180101/favourite", [("_csrf", sam.csrf.as_str()), ("favourite", "perhaps")]),
        (&admin, "/admin/sessions/stop", [("_csrf", admin.csrf.as_str()), ("ids", "not-an-id")]),
    ] {
        let response = app.browse(Method::POST, uri, Some(&browser.cookie), Some(&form), &[]).await;
        assert_eq!(response.status, 400, "{uri}: {}", response.text);
        let html = response.headers.get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("text/html"));
        assert!(html && response.text.contains("form: "), "{uri}: {}", response.text);
    }
    assert_eq!(count(&app, "favourites").await, 0, "nothing written");
}
