//! Who is asking. The `authenticate` layer resolves, once per request, either a bearer
//! token (scripts) or the session cookie (browsers), and guards every state-changing
//! browser request with its CSRF token and `Origin`. Handlers then take `CurrentUser`
//! (401 without one) or `MaybeUser`.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::identity::CurrentUser;
use crate::auth::sessions::{self, BrowserSession};
use crate::auth::tokens;
use crate::error::AppError;
use crate::state::AppState;

/// Marks a request that sent a bearer token daas does not accept.
#[derive(Clone, Copy)]
struct BadToken;

/// The form field carrying the CSRF token in HTML forms (htmx sends the header instead).
pub const CSRF_FIELD: &str = "_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest form body the CSRF check reads.
const FORM_LIMIT: usize = 1 << 20;
/// Where a browser says a request comes from, relative to its target.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether a request may change something (anything but GET, HEAD and OPTIONS).
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Paths that never need to know the caller.
fn is_public(path: &str) -> bool {
    path.starts_with("/static/") || matches!(path, "/healthz" | "/readyz" | "/metrics")
}

pub async fn authenticate(state: axum::extract::State<AppState>, mut request: Request, next: Next) -> Response {
    let state = state.0;
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    if let Some(token) = bearer(request.headers()) {
        match tokens::lookup(&state.db, token).await {
            Ok(Some(user)) => {
                request.extensions_mut().insert(user);
            }
            Ok(None) => {
                request.extensions_mut().insert(BadToken);
            }
            Err(err) => return AppError::from(err).into_response(),
        }
        // A bearer token is not ambient authority: no CSRF check needed.
        return next.run(request).await;
    }
    if is_unsafe(request.method()) && !from_origin(request.headers(), &state.config.web.public_url.origin()) {
        return AppError::Forbidden("this request comes from another site".into()).into_response();
    }
    if let Some(secret) = sessions::from_headers(request.headers()) {
        match sessions::lookup(&state.db, &state.config, secret).await {
            Ok(Some((user, session))) => {
                tracing::Span::current().record("user.id", tracing::field::display(user.id));
                if is_unsafe(request.method()) {
                    request = match check_csrf(request, &session.csrf_token).await {
                        Ok(request) => request,
                        Err(err) => return err.into_response(),
                    };
                }
                request.extensions_mut().insert(user);
                request.extensions_mut().insert(session);
            }
            Ok(None) => {}
            Err(err) => return AppError::from(err).into_response(),
        }
    }
    next.run(request).await
}

/// Whether a browser request was made by a page of `allowed` itself: its `Origin` names
/// exactly that origin or, where the browser sent no `Origin`, its `Sec-Fetch-Site` is
/// `same-origin` or `none` (typed by the user). A request with neither header is not from
/// a browser that could carry another site's page, and passes (scripts, `curl`).
pub fn from_origin(headers: &HeaderMap, allowed: &url::Origin) -> bool {
    match headers.get(ORIGIN) {
        // `null` and anything unparsable are refused; an opaque origin equals nothing.
        Some(origin) => {
            origin.to_str().ok().and_then(|o| url::Url::parse(o).ok()).is_some_and(|o| o.origin() == *allowed)
        }
        None => headers.get(SEC_FETCH_SITE).is_none_or(|site| matches!(site.as_bytes(), b"same-origin" | b"none")),
    }
}

/// The request must carry the session's CSRF token, in the `X-CSRF-Token` header or as
/// the `_csrf` field of a URL-encoded form (whose body is read and put back).
async fn check_csrf(request: Request, expected: &str) -> Result<Request, AppError> {
    let refused = || AppError::Forbidden("missing or wrong CSRF token; reload the page and try again".into());
    if let Some(value) = request.headers().get(CSRF_HEADER) {
        return if constant_time_eq(value.as_bytes(), expected.as_bytes()) { Ok(request) } else { Err(refused()) };
    }
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(refused());
    }
    let (parts, body) = request.into_parts();
    let bytes: Bytes =
        axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| AppError::invalid("body", "the form is too large"))?;
    let sent = url::form_urlencoded::parse(&bytes).find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.into_owned());
    match sent {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(refused()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<CurrentUser>() {
            return Ok(user.clone());
        }
        if parts.extensions.get::<BadToken>().is_some() {
            return Err(AppError::Unauthorized("the token is unknown, expired or revoked"));
        }
        Err(AppError::Unauthorized("log in or send an API token"))
    }
}

/// The caller if logged in, without refusing anyone.
pub struct MaybeUser(pub Option<CurrentUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(MaybeUser(parts.extensions.get::<CurrentUser>().cloned()))
    }
}

impl FromRequestParts<AppState> for BrowserSession {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<BrowserSession>().cloned().ok_or(AppError::Unauthorized("log in first"))
    }
}

/// The client's IP address (`unknown` where the server was not started with connection
/// info, as in tests that call the router directly).
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let addr = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(ClientAddr(addr.map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string())))
    }
}
