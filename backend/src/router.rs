//! The whole application assembled: the API (`api` merges each domain's `routes()`, which
//! lists its URLs with their OpenAPI description), the pages (`pages` merges the modules
//! that serve pages), the static files, `/healthz`, `/readyz`, `/metrics` and the layers
//! around them. To find a URL: `/api/v1/openapi.json` lists every API URL with its tag; a
//! page's path is in the `routes()` of one of the modules `pages` merges; a session origin
//! (`{id}.{sessions domain}`) never reaches these routes: the outermost layer,
//! `proxy::notebook::by_host`, answers it (`/_daas/enter`, and everything relayed to
//! Jupyter).

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::error::AppError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "daas", description = "Data analysis as a service for light sources"),
    modifiers(&BearerScheme),
    components(schemas(crate::error::ErrorBody))
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The API routes with their OpenAPI description.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::auth::me::routes())
        .merge(crate::proposals::routes::routes())
        .merge(crate::catalogue::routes::routes())
        .merge(crate::datasets::routes::routes())
        .merge(crate::admin::routes::routes())
        .merge(crate::tokens::routes::routes())
        .merge(crate::sessions::routes::routes())
        .merge(crate::sessions::members::routes())
        .merge(crate::sessions::control::routes())
        .merge(crate::sessions::access::routes())
        .merge(crate::sessions::node_report::routes())
        .merge(crate::jobs::routes::routes())
        .merge(crate::quotas::routes::routes())
        .merge(crate::beamlines::routes::routes())
}

/// The pages people use in a browser.
fn pages() -> Router<AppState> {
    Router::new()
        .merge(crate::auth::routes::routes())
        .merge(crate::proposals::views::routes())
        .merge(crate::tokens::views::routes())
        .merge(crate::sessions::views::routes())
        .merge(crate::sessions::sharing::routes())
        .merge(crate::admin::views::routes())
        .merge(crate::datasets::views::routes())
        .merge(crate::beamlines::views::routes())
        .merge(crate::proxy::desktop::routes())
        .merge(crate::proxy::notebook::routes())
        .merge(crate::proxy::webapp::routes())
}

/// Our CSS and JS, and the third-party browser code npm installed (never copied in).
fn assets(frontend: &std::path::Path) -> Router<AppState> {
    Router::new()
        .route_service(
            "/static/vendor/htmx.min.js",
            ServeFile::new(frontend.join("node_modules/htmx.org/dist/htmx.min.js")),
        )
        .nest_service("/static/vendor/novnc", ServeDir::new(frontend.join("node_modules/@novnc/novnc")))
        .nest_service("/static", ServeDir::new(frontend.join("static")))
}

/// Headers on every answer: no framing, no sniffing, no inline script, no referrer leaks.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// Writes axum's wildcard segments (`{*path}`, a path of several segments) as OpenAPI's
/// plain templates (`{path}`), so the document's paths name their parameters.
fn openapi_templates(openapi: &mut utoipa::openapi::OpenApi) {
    let paths = std::mem::take(&mut openapi.paths.paths);
    openapi.paths.paths = paths.into_iter().map(|(path, item)| (path.replace("{*", "{"), item)).collect();
}

/// The whole application, served with the state of the background tasks already started
/// (`crate::background::start`). Tests call this; `daas serve` serves it.
pub fn app(state: AppState, background: &crate::background::Background) -> Router {
    let (api, mut openapi) = api().split_for_parts();
    openapi_templates(&mut openapi);
    let openapi_json = openapi.to_pretty_json().expect("the OpenAPI document serialises");
    let request_id = HeaderName::from_static("x-request-id");
    let frontend = state.config.web.frontend_dir.clone();
    let mut router = Router::new()
        .merge(api)
        .merge(pages())
        .merge(assets(&frontend))
        .route(
            "/api/v1/openapi.json",
            get(move || async move { ([("content-type", "application/json")], openapi_json) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    if state.config.metrics_on_main {
        router = router.route("/metrics", get(metrics));
    }
    router
        .fallback(not_found)
        .with_state(state.clone())
        // Inside `authenticate`: a cross-site form is a 403 before its fields are looked at.
        .layer(axum::middleware::from_fn(crate::web::input::check_text))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::web::auth::authenticate))
        .layer(axum::middleware::from_fn(crate::telemetry::record_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("");
                    let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    if request.uri().path() == "/healthz" {
                        tracing::debug_span!("request", http.method = %request.method(), http.route = route, request_id, user.id = tracing::field::Empty)
                    } else {
                        tracing::info_span!("request", http.method = %request.method(), http.route = route, request_id, user.id = tracing::field::Empty)
                    }
                })
                .on_response(|response: &Response, latency: Duration, _span: &tracing::Span| {
                    tracing::debug!(http.status = response.status().as_u16(), duration_ms = latency.as_millis() as u64, "answered");
                }),
        )
        .layer(axum::middleware::from_fn(security_headers))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        // A client's id would go into our logs and audit rows unchecked: every id is ours.
        .layer(axum::middleware::map_request(drop_client_request_id))
        // Outermost: a session origin's requests never reach the portal's routes or cookie.
        .layer(axum::middleware::from_fn_with_state(background.notebooks.clone(), crate::proxy::notebook::by_host))
}

/// Removes an `X-Request-Id` the client sent, so that `SetRequestIdLayer` makes a new one.
async fn drop_client_request_id(mut request: Request) -> Request {
    request.headers_mut().remove("x-request-id");
    request
}

/// Adds `SECURITY_HEADERS` where a handler did not set its own.
async fn security_headers(request: Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    for (name, value) in SECURITY_HEADERS {
        response.headers_mut().entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}

/// Unknown API paths answer JSON; anything else a page.
async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        AppError::NotFound.into_response()
    } else {
        crate::web::page::PageError(AppError::NotFound).into_response()
    }
}

/// Ready when the database answers and has every migration this binary knows.
async fn readyz(state: AppState) -> Response {
    let check = tokio::time::timeout(Duration::from_secs(2), crate::db::check_migrated(&state.db)).await;
    match check {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(err)) => AppError::Unavailable(format!("database not ready: {err}")).into_response(),
        Err(_) => AppError::Unavailable("database not ready: no answer within 2 s".into()).into_response(),
    }
}

/// `/metrics` alone, for a listener of its own.
pub fn metrics_app(state: AppState) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

async fn metrics(state: AppState) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], state.metrics.render())
}
