//! `/api/v1/me` and bearer-token authentication.

use sqlx::PgPool;

use crate::common::TestApp;

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn me_is_the_token_owner(db: PgPool) {
    let app = TestApp::new(db).await;
    let me = app.get_as("sam", "/api/v1/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["username"], "sam");
    assert_eq!(me.body["role"], "scientist");
    assert_eq!(me.body["beamlines"], serde_json::json!(["BL11"]));
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn no_or_bad_token_is_401_in_the_json_shape(db: PgPool) {
    let app = TestApp::new(db).await;
    for token in [None, Some("daas_not-a-real-token"), Some("")] {
        let response = app.get("/api/v1/me", token).await;
        assert_eq!(response.status, 401, "{token:?}");
        assert_eq!(response.error_code(), "unauthorized");
        assert_eq!(response.headers["www-authenticate"], "Bearer");
    }
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn expired_and_revoked_tokens_are_refused(db: PgPool) {
    let app = TestApp::new(db).await;
    let token = app.token("alice").await;
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 200);
    sqlx::query(
        "update api_tokens set created_at = now() - interval '2 days', expires_at = now() - interval '1 second'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 401);

    let token = app.token("alice").await;
    sqlx::query("update api_tokens set revoked_at = now()").execute(&app.db).await.unwrap();
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 401);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_disabled_user_is_refused_at_once(db: PgPool) {
    let app = TestApp::new(db).await;
    let token = app.token("alice").await;
    daas::auth::users::set_enabled(&app.db, "alice", false).await.unwrap();
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 401);
    daas::auth::users::set_enabled(&app.db, "alice", true).await.unwrap();
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 200);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn tokens_are_stored_hashed_and_use_is_recorded(db: PgPool) {
    let app = TestApp::new(db).await;
    let token = app.token("alice").await;
    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("select token_hash from api_tokens").fetch_all(&app.db).await.unwrap();
    assert!(stored.iter().all(|h| h.len() == 32 && !token.as_bytes().windows(h.len()).any(|w| w == h.as_slice())));
    let text: i64 =
        sqlx::query_scalar("select count(*) from api_tokens where encode(token_hash, 'escape') like '%' || $1 || '%'")
            .bind(&token[5..20])
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(text, 0, "the secret itself is nowhere in the table");
    app.get("/api/v1/me", Some(&token)).await;
    let used: Option<time::OffsetDateTime> =
        sqlx::query_scalar("select last_used_at from api_tokens").fetch_one(&app.db).await.unwrap();
    assert!(used.is_some());
}
