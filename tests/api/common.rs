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
    pub config: daas::state::Config,
    router: Router,
    _data: tempfile::TempDir,
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
        Self::with_config(db, |_| {}).await
    }

    /// The demo facility with settings changed by `change`.
    pub async fn with_config(db: PgPool, change: impl FnOnce(&mut daas::state::Config)) -> Self {
        let data = tempfile::tempdir().unwrap();
        daas::demo::load_if_empty(&db, data.path()).await.unwrap().expect("an empty database");
        let mut config = daas::state::Config { data_root: data.path().to_owned(), ..Default::default() };
        config.web.local_login = true;
        // The workspace's frontend/, wherever the test runs from.
        config.web.frontend_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../frontend");
        change(&mut config);
        let router = daas::app(daas::AppState::new(db.clone(), config.clone()));
        Self { db, config, router, _data: data }
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
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Response { status, headers, body, text }
    }

    /// A logged-in browser: the session cookie's value and the session's CSRF token.
    pub async fn browser(&self, username: &str) -> Browser {
        let id = daas::auth::users::find(&self.db, username).await.unwrap();
        let set_cookie = daas::auth::sessions::create(&self.db, &self.config, id, None, None).await.unwrap();
        let cookie = set_cookie.to_str().unwrap().split(';').next().unwrap().to_string();
        let csrf = sqlx::query_scalar(
            "select csrf_token from browser_sessions where user_id = $1 order by created_at desc limit 1",
        )
        .bind(id)
        .fetch_one(&self.db)
        .await
        .unwrap();
        Browser { cookie, csrf }
    }

    /// A request as a browser sends it: the cookie (if any), a form body (if any).
    pub async fn browse(
        &self,
        method: Method,
        uri: &str,
        cookie: Option<&str>,
        form: Option<&[(&str, &str)]>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = match form {
            Some(form) => {
                let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
                request.header("content-type", "application/x-www-form-urlencoded").body(Body::from(body))
            }
            None => request.body(Body::empty()),
        }
        .unwrap();
        self.send(request).await
    }

    async fn send(&self, request: Request<Body>) -> Response {
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

/// A logged-in browser.
pub struct Browser {
    /// `daas_session=...`, ready for a `Cookie` header.
    pub cookie: String,
    pub csrf: String,
}
