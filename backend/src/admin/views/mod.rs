//! The admin console's pages under `/admin`, one module per section beside the section's
//! API module (`admin/images.rs` and `admin/views/images.rs`). Plain forms (CSRF-checked by
//! the web layer, read with `crate::web::Form`) that call the same functions as the JSON
//! API, so a page and a script change things the same way, audit included. Every page
//! route is in `routes()` below, as every API route is in `admin/routes.rs`.

mod access;
mod audit;
mod flavours;
mod images;
mod import;
mod notices;
mod quotas;
pub mod sessions;
mod usage;
mod users;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::auth::identity::CurrentUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::page::{see_other, Ctx, FormError, PageError, PageResult, PageUser};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|| async { see_other("/admin/images") }))
        .route("/admin/images", get(images::images_page).post(images::create_image))
        .route("/admin/images/{id}", post(images::update_image))
        .route("/admin/images/{id}/enabled", post(images::toggle_image))
        .route("/admin/images/{id}/delete", post(images::delete_image))
        .route("/admin/sessions", get(sessions::sessions_page))
        .route("/admin/sessions/list", get(sessions::session_table))
        .route("/admin/sessions/stop", post(sessions::stop_sessions))
        .route("/admin/sessions/{id}/extend", post(sessions::extend_session))
        .route("/admin/users", get(users::users_page))
        .route("/admin/users/{username}/role", post(users::set_role))
        .route("/admin/users/{username}/enabled", post(users::set_enabled))
        .route("/admin/usage", get(usage::usage_page))
        .route("/admin/audit", get(audit::audit_page))
        .route("/admin/access", get(access::access_page))
        .route("/admin/notices", get(notices::notices_page).post(notices::create_notice))
        .route("/admin/notices/{id}/delete", post(notices::delete_notice))
        .route("/admin/flavours", get(flavours::flavours_page).post(flavours::create_flavour))
        .route("/admin/flavours/{id}", post(flavours::update_flavour))
        .route("/admin/flavours/{id}/enabled", post(flavours::toggle_flavour))
        .route("/admin/flavours/{id}/delete", post(flavours::delete_flavour))
        .route("/admin/quotas", get(quotas::quotas_page).post(quotas::set_quota))
        .route("/admin/quotas/delete", post(quotas::delete_quota))
        .route("/admin/import", get(import::import_page).post(import::import_proposals))
        .route("/notices/banner", get(notices::notices_banner))
}

const WHEN: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day] [hour]:[minute]");

fn when(t: OffsetDateTime) -> String {
    t.format(WHEN).unwrap_or_default()
}

/// The visitor of an admin page, when they are an admin; anyone else gets the 403 page.
/// An extractor, so that it refuses before a form is read: a user's post is a 403 whatever
/// its fields.
struct AdminPage {
    user: CurrentUser,
    ctx: Ctx,
}

impl FromRequestParts<AppState> for AdminPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let PageUser { user, ctx } = PageUser::from_request_parts(parts, state).await?;
        if !user.is_admin() {
            return Err(PageError(AppError::Forbidden("this page needs the admin role".into())).into_response());
        }
        Ok(AdminPage { user, ctx })
    }
}

/// A whole number typed into a form: empty is `None`, anything else not a number is a 400
/// naming the field (the form shows again with what was typed).
fn number(field: &str, text: &str) -> Result<Option<i32>, AppError> {
    match text.trim() {
        "" => Ok(None),
        text => text.parse().map(Some).map_err(|_| AppError::invalid(field, "must be a whole number")),
    }
}

/// JSON typed into a form: empty is `None`, anything else not JSON is a 400 naming the field.
fn json(field: &str, text: &str) -> Result<Option<serde_json::Value>, AppError> {
    match text.trim() {
        "" => Ok(None),
        text => serde_json::from_str(text).map(Some).map_err(|e| AppError::invalid(field, format!("is not JSON: {e}"))),
    }
}

/// Why a form was refused: the status of the answer and the message by the field.
struct Refusal {
    status: StatusCode,
    message: FormError,
}

impl Refusal {
    /// An error a person can act on (400, 403, 409); anything else is the error page.
    fn of(err: AppError) -> Result<Self, PageError> {
        let status = err.status();
        Ok(Refusal { status, message: FormError::of(err)? })
    }

    /// Something typed into the form does not exist.
    fn not_found(message: String) -> Self {
        Refusal { status: StatusCode::NOT_FOUND, message: message.into() }
    }
}

/// A page shown again after a refused form, with the refusal's message and status, so
/// neither a person nor a script mistakes it for a success.
fn refused_page(refused: Option<Refusal>, page: impl FnOnce(Option<FormError>) -> PageResult) -> PageResult {
    let Some(refusal) = refused else { return page(None) };
    let mut response = page(Some(refusal.message))?;
    *response.status_mut() = refusal.status;
    Ok(response)
}
