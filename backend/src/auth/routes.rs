//! The front door: the login page (OIDC button, local form), the OIDC redirect and
//! callback, logout.

use askama::Template;
use axum::http::header::{SET_COOKIE, USER_AGENT};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use uuid::Uuid;

use super::local::{self, Outcome};
use super::oidc::LoginError;
use super::sessions::{self, BrowserSession};
use crate::audit::{self, Actor};
use crate::error::AppError;
use crate::state::AppState;
use crate::web::page::{render, see_other, Ctx, PageResult};
use crate::web::{ClientAddr, Form, MaybeUser, Query};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login_local))
        .route("/login/oidc", get(login_oidc))
        .route("/login/oidc/callback", get(oidc_callback))
        .route("/logout", post(logout))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    ctx: Ctx,
    next: String,
    oidc_name: Option<String>,
    local_login: bool,
    username: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextParam {
    next: Option<String>,
}

/// Only local paths: an open redirect to another site would make phishing easy.
fn safe_next(next: Option<&str>) -> String {
    crate::web::redirect::local_or(next, "/proposals")
}

fn login_page_for(state: &AppState, next: String, username: String, error: Option<String>) -> LoginPage {
    LoginPage {
        ctx: Ctx { user: None, csrf: String::new(), path: "/login".into(), beamlines: Vec::new() },
        next,
        oidc_name: state.oidc.as_ref().map(|o| o.name.clone()),
        local_login: state.config.web.local_login,
        username,
        error,
    }
}

async fn login_page(state: AppState, MaybeUser(user): MaybeUser, Query(q): Query<NextParam>) -> PageResult {
    let next = safe_next(q.next.as_deref());
    if user.is_some() {
        return Ok(see_other(&next));
    }
    render(&login_page_for(&state, next, String::new(), None))
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

async fn login_local(
    state: AppState,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> PageResult {
    if !state.config.web.local_login {
        return Err(AppError::NotFound.into());
    }
    let next = safe_next(form.next.as_deref());
    let page = |status: axum::http::StatusCode, error: &str| -> PageResult {
        let mut response = render(&login_page_for(&state, next.clone(), form.username.clone(), Some(error.into())))?;
        *response.status_mut() = status;
        Ok(response)
    };
    match local::login(&state.db, &form.username, &form.password, &addr).await? {
        Outcome::TooMany => page(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed logins. Try again in {} minutes.", local::WINDOW_MINUTES),
        ),
        Outcome::Refused => page(axum::http::StatusCode::UNAUTHORIZED, "Unknown username or wrong password."),
        Outcome::LoggedIn(user_id) => start_session(&state, user_id, &addr, &headers, "local", &next).await,
    }
}

/// Opens a browser session, audits the login and sends the browser on.
async fn start_session(
    state: &AppState,
    user_id: Uuid,
    addr: &str,
    headers: &HeaderMap,
    method: &str,
    next: &str,
) -> PageResult {
    let user_agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).map(String::from);
    let cookie = sessions::create(&state.db, &state.config, user_id, Some(addr.to_string()), user_agent).await?;
    let username = super::users::username(&state.db, user_id).await?;
    let actor = Actor {
        user_id: Some(user_id),
        name: username,
        remote_addr: Some(addr.to_string()),
        request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(String::from),
    };
    audit::record(&state.db, &actor, "user.login", "user", &user_id.to_string(), serde_json::json!({"method": method}))
        .await?;
    // Checked again here: the OIDC callback's target was stored at the start of the login.
    let mut response = see_other(&safe_next(Some(next)));
    response.headers_mut().insert(SET_COOKIE, cookie);
    Ok(response)
}

async fn login_oidc(state: AppState, Query(q): Query<NextParam>) -> PageResult {
    let oidc = state.oidc.as_ref().ok_or(AppError::NotFound)?;
    let next = safe_next(q.next.as_deref());
    match oidc.start_login(&state.db, &next).await {
        Ok(url) => Ok(see_other(url.as_str())),
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "OIDC login could not start");
            Err(AppError::Unavailable("the identity provider cannot be reached; try again in a moment".into()).into())
        }
    }
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn oidc_callback(
    state: AppState,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Query(cb): Query<Callback>,
) -> PageResult {
    let oidc = state.oidc.as_ref().ok_or(AppError::NotFound)?;
    let refuse = |message: String| -> PageResult {
        let mut response = render(&login_page_for(&state, "/proposals".into(), String::new(), Some(message)))?;
        *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
        Ok(response)
    };
    let (Some(code), Some(login_state)) = (cb.code, cb.state) else {
        let why = cb.error_description.or(cb.error).unwrap_or_else(|| "no authorization code".into());
        return refuse(format!("The login did not complete: {why}"));
    };
    match oidc.finish_login(&state.db, &login_state, &code).await {
        Ok((user_id, next)) => start_session(&state, user_id, &addr, &headers, "oidc", &next).await,
        Err(LoginError::Db(err)) => Err(err.into()),
        Err(err) => {
            let cause = std::error::Error::source(&err).map(|c| format!("{c:#}")).unwrap_or_default();
            tracing::warn!(error = %err, cause, remote_addr = %addr, "OIDC login refused");
            refuse(err.to_string())
        }
    }
}

/// Ends the session (if any is live) and forgets the cookie either way.
async fn logout(state: AppState, request: axum::extract::Request) -> Response {
    if let Some(session) = request.extensions().get::<BrowserSession>() {
        if let Err(err) = sessions::end(&state.db, session.id).await {
            return AppError::from(err).into_response();
        }
    }
    let mut response = see_other("/login");
    response.headers_mut().insert(SET_COOKIE, sessions::cookie(&state.config, "", None));
    response.headers_mut().insert("clear-site-data", axum::http::HeaderValue::from_static("\"cache\""));
    response
}
