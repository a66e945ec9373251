//! `TestApp`: the app over a fresh database with the demo data, and request helpers.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;

pub struct TestApp {
    pub db: PgPool,
    router: Router,
    /// The data root (datasets live below it).
    pub data: tempfile::TempDir,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestApp {
    /// The demo facility: alice, bob, carol, dave, sam (BL11 scientist), admin.
    pub async fn new(db: PgPool) -> Self {
        let data = tempfile::tempdir().unwrap();
        daas::demo::load_if_empty(&db, data.path()).await.unwrap().expect("an empty database");
        let config = daas::state::Config { data_root: data.path().to_owned(), metrics_on_main: true };
        let router = daas::app(daas::AppState::new(db.clone(), config));
        Self { db, router, data }
    }

    pub async fn token(&self, username: &str) -> String {
        let id = daas::auth::users::find(&self.db, username).await.unwrap();
        daas::auth::tokens::create(&self.db, id, "test", None).await.unwrap().1
    }

    pub async fn request(&self, method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> Response {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request.header("content-type", "application/json").body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        self.send(request).await
    }

    /// Sends a request built by hand (other content types, headers).
    pub async fn send(&self, request: Request<Body>) -> Response {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Response { status, headers, body, text }
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, uri, token, None).await
    }

    /// `get` as a logged-in user (a fresh token each time).
    pub async fn get_as(&self, username: &str, uri: &str) -> Response {
        let token = self.token(username).await;
        self.get(uri, Some(&token)).await
    }
}

impl Response {
    /// Asserts the JSON error shape of DESIGN.md and returns its code.
    pub fn error_code(&self) -> &str {
        let code = self.body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error body: {}", self.text));
        assert!(self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.text);
        code
    }
}

/// The identifiers of a proposals page.
pub fn identifiers(body: &Value) -> Vec<&str> {
    body["items"].as_array().unwrap().iter().map(|p| p["identifier"].as_str().unwrap()).collect()
}
