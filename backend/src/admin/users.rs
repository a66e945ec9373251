//! Users: list and search, change a role, enable or disable (a disabled user's browser
//! sessions end and their tokens stop working at once), the beamlines a scientist looks
//! after, and each user's sessions and tokens.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::db::users as db;
pub use super::db::users::{TokenRow, UserRow, UserSession};
use super::{filter, like_pattern, paginate, Page};
use crate::audit::{self, Actor};
use crate::auth::identity::Role;
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::{AdminUser, Json, Path, Query};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    /// Matches the username, name, email or affiliation (case-insensitive, anywhere).
    q: Option<String>,
    /// `user`, `scientist` or `admin`.
    role: Option<String>,
    enabled: Option<bool>,
    #[param(minimum = 1)]
    page: Option<i64>,
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<i64>,
}

/// Users, searched and filtered, by username.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", params(UserFilter),
    responses((status = 200, body = Page<UserRow>), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_users(
    state: AppState,
    _admin: AdminUser,
    Query(f): Query<UserFilter>,
) -> Result<Json<Page<UserRow>>> {
    let (page, per_page, offset) = paginate(f.page, f.per_page)?;
    let (items, total) = search(&state.db, filter(&f.q), filter(&f.role), f.enabled, per_page, offset).await?;
    Ok(Json(Page { items, total, page, per_page }))
}

/// Users matching a search (username, name, email, affiliation), a role and a state, by
/// username; and how many match in all.
pub async fn search(
    db: &sqlx::PgPool,
    q: Option<&str>,
    role: Option<&str>,
    enabled: Option<bool>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<UserRow>, i64)> {
    if role.is_some_and(|r| Role::parse(r).is_none()) {
        return Err(AppError::invalid("role", "must be user, scientist or admin"));
    }
    let search = db::Search { pattern: q.map(like_pattern), role, enabled };
    let items = db::search(db, &search, limit, offset).await?;
    let total = db::count(db, &search).await?;
    Ok((items, total))
}

#[derive(Serialize, ToSchema)]
pub struct UserDetail {
    #[serde(flatten)]
    pub user: UserRow,
    /// The latest 100 sessions the user owns.
    pub sessions: Vec<UserSession>,
    pub tokens: Vec<TokenRow>,
}

async fn find(db: impl sqlx::PgExecutor<'_>, username: &str) -> Result<UserRow> {
    Ok(db::find(db, username).await?)
}

/// One user with their sessions and tokens.
#[utoipa::path(get, path = "/api/v1/admin/users/{username}", tag = "admin",
    params(("username" = String, Path)),
    responses((status = 200, body = UserDetail), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_user(state: AppState, _admin: AdminUser, Path(username): Path<String>) -> Result<Json<UserDetail>> {
    let user = find(&state.db, &username).await?;
    let sessions = db::sessions_of(&state.db, user.id).await?;
    let tokens = db::tokens_of(&state.db, user.id).await?;
    Ok(Json(UserDetail { user, sessions, tokens }))
}

/// Locks the user's row and returns their id; 404 when there is no such user.
async fn lock(tx: &mut sqlx::PgConnection, username: &str) -> Result<(Uuid, String, bool)> {
    db::lock(tx, username).await?.ok_or(AppError::NotFound)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    pub role: Role,
}

/// Changes a user's role. An admin cannot take the role from themselves (so the last
/// admin cannot lock everyone out by mistake).
#[utoipa::path(put, path = "/api/v1/admin/users/{username}/role", tag = "admin", request_body = RoleInput,
    params(("username" = String, Path)),
    responses((status = 200, body = UserRow), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_user_role(
    state: AppState,
    AdminUser(admin): AdminUser,
    actor: Actor,
    Path(username): Path<String>,
    Json(input): Json<RoleInput>,
) -> Result<Json<UserRow>> {
    Ok(Json(set_role(&state.db, &admin, &actor, &username, input.role).await?))
}

/// Changes a user's role, with its audit event.
pub async fn set_role(
    db: &sqlx::PgPool,
    admin: &crate::auth::identity::CurrentUser,
    actor: &Actor,
    username: &str,
    role: Role,
) -> Result<UserRow> {
    let mut tx = db.begin().await?;
    let (id, before, _) = lock(&mut tx, username).await?;
    if id == admin.id && role != Role::Admin {
        return Err(AppError::Conflict("you cannot take the admin role from yourself".into()));
    }
    db::set_role(&mut tx, id, role.as_str()).await?;
    audit::record(&mut *tx, actor, "user.set_role", "user", &id.to_string(), json!({"from": before, "role": role}))
        .await?;
    let user = find(&mut *tx, username).await?;
    tx.commit().await?;
    Ok(user)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnabledInput {
    pub enabled: bool,
}

/// Enables or disables an account; disabling ends its browser sessions and makes its
/// tokens useless at once.
#[utoipa::path(put, path = "/api/v1/admin/users/{username}/enabled", tag = "admin", request_body = EnabledInput,
    params(("username" = String, Path)),
    responses((status = 200, body = UserRow), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_user_enabled(
    state: AppState,
    AdminUser(admin): AdminUser,
    actor: Actor,
    Path(username): Path<String>,
    Json(input): Json<EnabledInput>,
) -> Result<Json<UserRow>> {
    Ok(Json(set_enabled(&state.db, &admin, &actor, &username, input.enabled).await?))
}

/// Enables or disables an account, with its audit event.
pub async fn set_enabled(
    db: &sqlx::PgPool,
    admin: &crate::auth::identity::CurrentUser,
    actor: &Actor,
    username: &str,
    enabled: bool,
) -> Result<UserRow> {
    let mut tx = db.begin().await?;
    let (id, _, _) = lock(&mut tx, username).await?;
    if id == admin.id && !enabled {
        return Err(AppError::Conflict("you cannot disable your own account".into()));
    }
    crate::auth::users::set_enabled_by(&mut tx, actor, id, enabled).await?;
    let user = find(&mut *tx, username).await?;
    tx.commit().await?;
    Ok(user)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BeamlinesInput {
    /// The beamlines the user looks after (their proposals become visible to a scientist,
    /// and they may link data on their experiments).
    pub beamlines: Vec<String>,
}

fn is_beamline(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 32
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Sets the beamlines a user looks after.
#[utoipa::path(put, path = "/api/v1/admin/users/{username}/beamlines", tag = "admin", request_body = BeamlinesInput,
    params(("username" = String, Path)),
    responses((status = 200, body = UserRow), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_user_beamlines(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Path(username): Path<String>,
    Json(mut input): Json<BeamlinesInput>,
) -> Result<Json<UserRow>> {
    input.beamlines.iter_mut().for_each(|b| *b = b.trim().to_owned());
    if let Some(bad) = input.beamlines.iter().find(|b| !is_beamline(b)) {
        return Err(AppError::invalid("beamlines", format!("{bad:?} is not a beamline name")));
    }
    input.beamlines.sort();
    input.beamlines.dedup();
    let mut tx = state.db.begin().await?;
    let (id, _, _) = lock(&mut tx, &username).await?;
    db::set_beamlines(&mut tx, id, &input.beamlines).await?;
    audit::record(
        &mut *tx,
        &actor,
        "user.set_beamlines",
        "user",
        &id.to_string(),
        json!({"beamlines": input.beamlines}),
    )
    .await?;
    let user = find(&mut *tx, &username).await?;
    tx.commit().await?;
    Ok(Json(user))
}

/// Revokes one of a user's API tokens.
#[utoipa::path(delete, path = "/api/v1/admin/users/{username}/tokens/{id}", tag = "admin",
    params(("username" = String, Path), ("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_user_token(
    state: AppState,
    AdminUser(admin): AdminUser,
    actor: Actor,
    Path((username, id)): Path<(String, Uuid)>,
) -> Result<axum::http::StatusCode> {
    crate::tokens::db::revoke(&state.db, &actor, &admin, id, Some(&username)).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
