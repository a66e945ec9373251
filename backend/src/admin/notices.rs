//! System notices: an admin posts a banner with an expiry; every logged-in user reads the
//! active ones from `GET /api/v1/notices`.

use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::db::notices as db;
pub use super::db::notices::Notice;
use crate::audit::{self, Actor};
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::{AdminUser, Json, Path};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeInput {
    pub message: String,
    /// `info` (default), `warning` or `outage`.
    pub level: Option<String>,
    /// When it starts showing (RFC 3339); now when left out.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub starts_at: Option<OffsetDateTime>,
    /// When it stops showing (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// The notices showing now, most severe first.
#[utoipa::path(get, path = "/api/v1/notices", tag = "notices",
    responses((status = 200, body = Vec<Notice>), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_notices(state: AppState, _user: CurrentUser) -> Result<Json<Vec<Notice>>> {
    Ok(Json(active(&state.db).await?))
}

/// The notices showing now, most severe first.
pub async fn active(db: &sqlx::PgPool) -> Result<Vec<Notice>> {
    Ok(db::active(db).await?)
}

/// Every notice not yet expired, and those expired in the last 30 days.
#[utoipa::path(get, path = "/api/v1/admin/notices", tag = "admin",
    responses((status = 200, body = Vec<Notice>), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_admin_notices(state: AppState, _admin: AdminUser) -> Result<Json<Vec<Notice>>> {
    Ok(Json(recent(&state.db).await?))
}

/// Notices not yet expired, and those expired in the last 30 days, newest first.
pub async fn recent(db: &sqlx::PgPool) -> Result<Vec<Notice>> {
    Ok(db::recent(db).await?)
}

/// Posts a notice.
#[utoipa::path(post, path = "/api/v1/admin/notices", tag = "admin", request_body = NoticeInput,
    responses((status = 201, body = Notice), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_notice(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Json(input): Json<NoticeInput>,
) -> Result<(axum::http::StatusCode, Json<Notice>)> {
    Ok((axum::http::StatusCode::CREATED, Json(create(&state.db, &actor, input).await?)))
}

/// Checks and stores a notice, with its audit event.
pub async fn create(db: &sqlx::PgPool, actor: &Actor, input: NoticeInput) -> Result<Notice> {
    let message = input.message.trim();
    if message.is_empty() || message.chars().count() > 2000 {
        return Err(AppError::invalid("message", "must be 1 to 2000 characters"));
    }
    let level = input.level.as_deref().unwrap_or("info");
    if !["info", "warning", "outage"].contains(&level) {
        return Err(AppError::invalid("level", "must be info, warning or outage"));
    }
    let now = OffsetDateTime::now_utc();
    let starts_at = input.starts_at.unwrap_or(now);
    if input.expires_at <= starts_at.max(now) {
        return Err(AppError::invalid("expires_at", "must be in the future and after starts_at"));
    }
    let mut tx = db.begin().await?;
    let notice = db::insert(&mut tx, message, level, starts_at, input.expires_at, actor.user_id).await?;
    audit::record(
        &mut *tx,
        actor,
        "notice.create",
        "notice",
        &notice.id.to_string(),
        json!({"message": message, "level": level}),
    )
    .await?;
    tx.commit().await?;
    Ok(notice)
}

/// Withdraws a notice.
#[utoipa::path(delete, path = "/api/v1/admin/notices/{id}", tag = "admin",
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_notice(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::http::StatusCode> {
    delete(&state.db, &actor, id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Withdraws a notice, with its audit event.
pub async fn delete(db: &sqlx::PgPool, actor: &Actor, id: Uuid) -> Result<()> {
    let mut tx = db.begin().await?;
    let message = db::delete(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    audit::record(&mut *tx, actor, "notice.delete", "notice", &id.to_string(), json!({"message": message})).await?;
    tx.commit().await?;
    Ok(())
}
