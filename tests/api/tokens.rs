//! `GET/POST /api/v1/tokens`, `DELETE /api/v1/tokens/{id}` and the tokens page.

use axum::http::Method;
use serde_json::json;
use sqlx::PgPool;

use crate::common::TestApp;

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn create_list_and_revoke_ones_own(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.token("alice").await;
    let created = app
        .request(Method::POST, "/api/v1/tokens", Some(&alice), Some(json!({"name": "laptop", "expires_in_days": 30})))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let secret = created.body["token"].as_str().unwrap().to_string();
    assert_eq!(app.get("/api/v1/me", Some(&secret)).await.body["username"], "alice");

    let list = app.get("/api/v1/tokens", Some(&alice)).await;
    let names: Vec<&str> = list.body.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["laptop", "test"]);
    assert!(!list.text.contains(&secret), "a secret is shown once only");

    // bob cannot revoke it: 404, not 403.
    let id = created.body["id"].as_str().unwrap();
    let bob = app.token("bob").await;
    assert_eq!(app.request(Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(&bob), None).await.status, 404);
    assert_eq!(app.request(Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(&alice), None).await.status, 204);
    assert_eq!(app.get("/api/v1/me", Some(&secret)).await.status, 401);
    assert_eq!(app.request(Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(&alice), None).await.status, 404);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn bad_token_requests_are_400_and_write_nothing(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.token("alice").await;
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "expires_in_days": 0}), "expires_in_days"),
        (json!({"name": "x", "expires_in_days": 9999}), "expires_in_days"),
        (json!({"nom": "x"}), "body"),
    ] {
        let response = app.request(Method::POST, "/api/v1/tokens", Some(&alice), Some(body)).await;
        assert_eq!(response.status, 400, "{}", response.text);
        assert_eq!(response.body["error"]["field"], field);
    }
    let count: i64 = sqlx::query_scalar("select count(*) from api_tokens").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 1, "only the test's own token");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn admins_manage_anyones_tokens_users_only_their_own(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    let alice = app.token("alice").await;
    let for_bob = app
        .request(Method::POST, "/api/v1/tokens", Some(&admin), Some(json!({"name": "for bob", "user": "bob"})))
        .await;
    assert_eq!(for_bob.status, 201);
    assert_eq!(app.get("/api/v1/me", Some(for_bob.body["token"].as_str().unwrap())).await.body["username"], "bob");
    assert_eq!(app.get("/api/v1/tokens?user=bob", Some(&admin)).await.body.as_array().unwrap().len(), 1);
    assert_eq!(app.get("/api/v1/tokens?user=bob", Some(&alice)).await.status, 404);
    let by_alice =
        app.request(Method::POST, "/api/v1/tokens", Some(&alice), Some(json!({"name": "x", "user": "bob"}))).await;
    assert_eq!(by_alice.status, 404);
    let audited: i64 =
        sqlx::query_scalar("select count(*) from audit_events where action = 'token.create' and actor_name = 'admin'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(audited, 1);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn the_tokens_page_shows_a_new_secret_once(db: PgPool) {
    let app = TestApp::new(db).await;
    let browser = app.browser("alice").await;
    let form = [("_csrf", browser.csrf.as_str()), ("name", "notebook scripts"), ("expires_in_days", "7")];
    let created = app.browse(Method::POST, "/tokens", Some(&browser.cookie), Some(&form), &[]).await;
    assert_eq!(created.status, 200);
    let secret = created.text.split("id=\"new-token\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    assert!(secret.starts_with("daas_"));
    let again = app.browse(Method::GET, "/tokens", Some(&browser.cookie), None, &[]).await;
    assert!(again.text.contains("notebook scripts") && !again.text.contains(&secret));
}
