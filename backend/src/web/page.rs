//! Server-rendered pages: the layout context every page gets, the extractor that sends a
//! visitor who is not logged in to the login page, and errors shown as pages.

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::header::{CACHE_CONTROL, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::auth::identity::CurrentUser;
use crate::auth::sessions::BrowserSession;
use crate::error::AppError;
use crate::state::AppState;

/// What the layout needs: who is logged in, their CSRF token, the current section.
pub struct Ctx {
    pub user: Option<CurrentUser>,
    pub csrf: String,
    /// Path of the page, to mark the current navigation entry.
    pub path: String,
    /// The beamlines whose sessions the visitor looks after (a scientist's), linked in the
    /// navigation.
    pub beamlines: Vec<String>,
}

impl Ctx {
    pub fn role(&self) -> &'static str {
        self.user.as_ref().map_or("", |u| u.role.as_str())
    }

    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(CurrentUser::is_admin)
    }

    /// `aria-current` for a navigation link.
    pub fn current(&self, prefix: &str) -> &'static str {
        if self.path.starts_with(prefix) {
            "page"
        } else {
            "false"
        }
    }

    /// `aria-current` for the navigation link to a beamline's sessions.
    pub fn current_beamline(&self, beamline: &str) -> &'static str {
        self.current(&format!("/beamlines/{}/", path_segment(beamline)))
    }
}

/// A logged-in visitor of a page; anyone else is sent to `/login?next=<this page>`.
pub struct PageUser {
    pub user: CurrentUser,
    pub ctx: Ctx,
}

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = parts.extensions.get::<CurrentUser>().cloned();
        let session = parts.extensions.get::<BrowserSession>().cloned();
        let path = parts.uri.path().to_string();
        match (user, session) {
            (Some(user), Some(session)) => {
                let beamlines = crate::beamlines::db::of_user(&state.db, &user)
                    .await
                    .map_err(|err| PageError(err.into()).into_response())?;
                let ctx = Ctx { user: Some(user.clone()), csrf: session.csrf_token, path, beamlines };
                Ok(PageUser { ctx, user })
            }
            _ => {
                let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let target = format!(
                    "/login?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                Err(see_other(&target))
            }
        }
    }
}

/// Why a form was refused, for the page that shows it again with what was typed: the
/// message, and the field it is about (the form control's `name`), so the page shows the
/// message by that field. The page renders it above the form with `data-field`; `app.js`
/// moves it next to the control and ties the two with `aria-describedby` and
/// `aria-invalid` (without JavaScript it stays above the form, naming the field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormError {
    pub field: Option<String>,
    pub message: String,
}

impl FormError {
    /// An error a person can act on (a refused field, a conflict, a refusal); anything else
    /// is not theirs to fix and is the error page.
    pub fn of(err: AppError) -> Result<FormError, PageError> {
        match err {
            AppError::Invalid { field, message } => {
                Ok(FormError { message: format!("{}: {message}", field.replace('_', " ")), field: Some(field) })
            }
            AppError::Conflict(message) | AppError::Forbidden(message) => Ok(message.into()),
            other => Err(PageError(other)),
        }
    }

    /// The same error about the control named `name` (a form's name for an API's field).
    pub fn on(self, name: impl Into<String>) -> FormError {
        FormError { field: Some(name.into()), ..self }
    }
}

impl From<String> for FormError {
    fn from(message: String) -> Self {
        FormError { field: None, message }
    }
}

impl From<&str> for FormError {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

impl std::fmt::Display for FormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a path segment keeps as is: letters, digits and `-._~` (RFC 3986's unreserved).
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `value` as one path segment: all else percent-encoded, as the templates'
/// `urlencode_strict` does, so an identifier holding `/`, `?`, `#`, `%`, `+`, a space or
/// non-ASCII stays one segment and decodes back to itself. (A form encoder would write a
/// space as `+`, which a path keeps as `+`.)
pub fn path_segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}

/// A 303 redirect (after a form POST, the browser GETs the target).
pub fn see_other(target: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(target) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// Renders a page. Pages carry personal data: never cached, so the back button after
/// logout asks the server again (and gets the login page).
pub fn render(template: &impl Template) -> Result<Response, PageError> {
    let html = template.render().map_err(|e| PageError(AppError::Other(e.into())))?;
    let mut response = Html(html).into_response();
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// An error, shown as a page (or as a small fragment to an htmx request).
#[derive(Debug)]
pub struct PageError(pub AppError);

impl<E: Into<AppError>> From<E> for PageError {
    fn from(err: E) -> Self {
        PageError(err.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    ctx: Ctx,
    status: u16,
    title: &'static str,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let (title, message) = match &self.0 {
            AppError::NotFound => ("Not found", "There is nothing here, or it is not yours to see.".to_string()),
            AppError::Unauthorized(_) => return see_other("/login"),
            err if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE => {
                tracing::error!(error = ?err, "page failed");
                ("Something went wrong", "The error was logged. Please try again later.".to_string())
            }
            err => (status.canonical_reason().unwrap_or("Error"), err.to_string()),
        };
        let page = ErrorPage {
            ctx: Ctx { user: None, csrf: String::new(), path: String::new(), beamlines: Vec::new() },
            status: status.as_u16(),
            title,
            message,
        };
        let html = page.render().unwrap_or_else(|_| format!("{title}: {}", page.message));
        (status, [(CACHE_CONTROL, "no-store")], Html(html)).into_response()
    }
}

pub type PageResult<T = Response> = Result<T, PageError>;

/// Whether the request came from htmx (which wants a fragment, not a page).
pub fn is_htmx(headers: &axum::http::HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v == "true")
}

/// Formats a byte count for people: 240 KiB, 3.1 GiB.
pub fn human_bytes(bytes: &i64) -> String {
    let mut value = *bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if value < 1024.0 || unit == "TiB" {
            return if unit == "B" { format!("{bytes} B") } else { format!("{value:.1} {unit}") };
        }
        value /= 1024.0;
    }
    unreachable!("the loop returns at TiB")
}
