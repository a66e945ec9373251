use sqlx::PgPool;

use crate::common::TestApp;

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn healthz_and_readyz_answer(db: PgPool) {
    let app = TestApp::new(db).await;
    assert_eq!(app.get("/healthz", None).await.status, 200);
    assert_eq!(app.get("/readyz", None).await.status, 200);
}

#[sqlx::test(migrations = false)]
async fn readyz_is_503_before_migrations(db: PgPool) {
    let config = daas::state::Config::default();
    let state = daas::AppState::new(db, config, std::sync::Arc::new(daas::runtime::fake::FakeRuntime::default()));
    let background = daas::background::start(&state, daas::background::Reconciler::Leave);
    let router = daas::app(state, &background);
    let response = tower::ServiceExt::oneshot(
        router,
        axum::http::Request::get("/readyz").body(axum::body::Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 503);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn every_answer_carries_a_request_id(db: PgPool) {
    let app = TestApp::new(db).await;
    let response = app.get("/api/v1/proposals", None).await;
    let id = response.headers.get("x-request-id").expect("x-request-id");
    assert_eq!(id.len(), 36, "a UUID");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn metrics_count_requests_by_route_template(db: PgPool) {
    let app = TestApp::new(db).await;
    let token = app.token("alice").await;
    app.get("/api/v1/proposals/20180101", Some(&token)).await;
    let metrics = app.get("/metrics", None).await.text;
    assert!(
        metrics.lines().any(|l| l.starts_with("http_requests_total{")
            && l.contains(r#"route="/api/v1/proposals/{id}""#)
            && l.contains(r#"status="200""#)),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket{"), "{metrics}");
    assert!(!metrics.contains("20180101"), "raw paths must not become labels");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn openapi_describes_every_api_route(db: PgPool) {
    let app = TestApp::new(db).await;
    let doc = app.get("/api/v1/openapi.json", None).await.body;
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/api/v1/me", "/api/v1/proposals", "/api/v1/proposals/{id}", "/api/v1/images", "/api/v1/flavours"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} missing from the OpenAPI document");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    // A route that takes a path of several segments is written as OpenAPI writes templates.
    assert!(doc["paths"]["/api/v1/jobs/{id}/outputs/{path}"]["get"].is_object());
    assert!(doc["paths"].as_object().unwrap().keys().all(|p| !p.contains("{*")));
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn unknown_routes_are_404_in_the_json_shape(db: PgPool) {
    let app = TestApp::new(db).await;
    let response = app.get("/api/v1/nothing-here", None).await;
    assert_eq!(response.status, 404);
    assert_eq!(response.error_code(), "not_found");
}
