//! Quotas: defaults per role, overrides per user and per proposal, each shown with what is
//! in use now (sessions not yet stopped) and the GPU-hours of the current month (UTC).

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::db::quotas::{self as db, Subject};
pub use super::db::quotas::{Limits, Use};
use crate::audit::{self, Actor};
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::{AdminUser, Json, Path};

#[derive(Serialize, ToSchema)]
pub struct Quota {
    pub id: Uuid,
    /// `role`, `user` or `proposal`.
    pub scope: String,
    /// The role, username or proposal identifier the quota is for.
    pub subject: String,
    #[serde(flatten)]
    pub limits: Limits,
    /// For a role: the sum over all its users (the limit applies to each of them).
    pub in_use: Use,
}

/// Every quota with its current use: roles first, then users, then proposals.
#[utoipa::path(get, path = "/api/v1/admin/quotas", tag = "admin",
    responses((status = 200, body = Vec<Quota>), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_quotas(state: AppState, _admin: AdminUser) -> Result<Json<Vec<Quota>>> {
    Ok(Json(all(&state.db).await?))
}

/// Every quota with its current use.
pub async fn all(db: &sqlx::PgPool) -> Result<Vec<Quota>> {
    let rows = db::all(db).await?;
    Ok(rows
        .into_iter()
        .map(|r| Quota { id: r.id, scope: r.scope, subject: r.subject, limits: r.limits, in_use: r.in_use })
        .collect())
}

fn check(limits: &Limits, target: &Subject) -> Result<()> {
    for (field, value) in [
        ("max_sessions", limits.max_sessions),
        ("max_cpu_millis", limits.max_cpu_millis),
        ("max_memory_mib", limits.max_memory_mib),
        ("max_gpus", limits.max_gpus),
        ("max_gpu_hours_month", limits.max_gpu_hours_month),
        ("extension_minutes", limits.extension_minutes),
    ] {
        if value.is_some_and(|v| v < 0) {
            return Err(AppError::invalid(field, "must not be negative (no value means no limit)"));
        }
    }
    for (field, value) in [("lifetime_minutes", limits.lifetime_minutes), ("idle_minutes", limits.idle_minutes)] {
        if value.is_some_and(|v| v < 1) {
            return Err(AppError::invalid(field, "must be at least 1 minute (no value means the default)"));
        }
    }
    let times = [limits.lifetime_minutes, limits.idle_minutes, limits.extension_minutes];
    if matches!(target, Subject::Proposal(_)) {
        if let Some(field) = ["lifetime_minutes", "idle_minutes", "extension_minutes"]
            .into_iter()
            .zip(times)
            .find_map(|(field, value)| value.map(|_| field))
        {
            return Err(AppError::invalid(field, "is set per role or per user, not per proposal"));
        }
    }
    Ok(())
}

async fn resolve(db: &sqlx::PgPool, scope: &str, subject: &str) -> Result<Subject> {
    match scope {
        "roles" => crate::auth::identity::Role::parse(subject)
            .map(|r| Subject::Role(r.as_str().into()))
            .ok_or(AppError::NotFound),
        "users" => db::user_id(db, subject).await?.map(Subject::User).ok_or(AppError::NotFound),
        "proposals" => db::proposal_id(db, subject).await?.map(Subject::Proposal).ok_or(AppError::NotFound),
        _ => Err(AppError::NotFound),
    }
}

/// Sets the limits of a role (`roles/user`), a user (`users/alice`) or a proposal
/// (`proposals/20180101`), creating the override if there was none.
#[utoipa::path(put, path = "/api/v1/admin/quotas/{scope}/{subject}", tag = "admin", request_body = Limits,
    params(("scope" = String, Path, description = "`roles`, `users` or `proposals`"),
           ("subject" = String, Path, description = "a role, a username or a proposal identifier")),
    responses((status = 200, body = Limits), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_quota(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Path((scope, subject)): Path<(String, String)>,
    Json(limits): Json<Limits>,
) -> Result<Json<Limits>> {
    Ok(Json(set(&state.db, &actor, &scope, &subject, limits).await?))
}

/// Checks and stores the limits of `scope` (`roles`, `users`, `proposals`) `subject`, with
/// its audit event; 404 when there is no such role, user or proposal.
pub async fn set(db: &sqlx::PgPool, actor: &Actor, scope: &str, subject: &str, limits: Limits) -> Result<Limits> {
    let target = resolve(db, scope, subject).await?;
    check(&limits, &target)?;
    let kind = target.kind();
    let mut tx = db.begin().await?;
    let id = db::upsert(&mut tx, &target, &limits).await?;
    audit::record(
        &mut *tx,
        actor,
        "quota.set",
        "quota",
        &id.to_string(),
        json!({"scope": kind, "subject": subject, "limits": limits}),
    )
    .await?;
    tx.commit().await?;
    Ok(limits)
}

/// Removes a user's or a proposal's override (a role's defaults cannot be removed, only
/// set to unlimited).
#[utoipa::path(delete, path = "/api/v1/admin/quotas/{scope}/{subject}", tag = "admin",
    params(("scope" = String, Path, description = "`users` or `proposals`"),
           ("subject" = String, Path, description = "a username or a proposal identifier")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_quota(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Path((scope, subject)): Path<(String, String)>,
) -> Result<axum::http::StatusCode> {
    remove(&state.db, &actor, &scope, &subject).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Removes a user's or a proposal's override, with its audit event.
pub async fn remove(db: &sqlx::PgPool, actor: &Actor, scope: &str, subject: &str) -> Result<()> {
    let target = resolve(db, scope, subject).await?;
    if let Subject::Role(_) = target {
        return Err(AppError::invalid("scope", "a role's defaults cannot be removed; set them to null instead"));
    }
    let kind = target.kind();
    let mut tx = db.begin().await?;
    let id = db::delete(&mut tx, &target).await?.ok_or(AppError::NotFound)?;
    audit::record(
        &mut *tx,
        actor,
        "quota.delete",
        "quota",
        &id.to_string(),
        json!({"scope": kind, "subject": subject}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
