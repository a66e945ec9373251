//! Who shares a session and who controls its desktop: members are added by the owner (or
//! an admin) with a role (`user`, `guest`, `support`); one member controls the desktop at
//! a time, the owner unless the owner handed control to a `user` member. Each change is
//! also a session event, so open relays and pages learn of it at once.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::db;
use crate::audit::Actor;
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::{CurrentUser, Json, Path};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members, add_member))
        .routes(routes!(remove_member))
        .routes(routes!(get_control, hand_over_control))
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Member {
    pub username: String,
    pub display_name: String,
    /// `owner`, `user`, `guest` or `support`.
    pub role: String,
}

#[derive(Deserialize, ToSchema)]
pub struct AddMember {
    /// The username of the person to add.
    pub user: String,
    /// `user` (may control when handed control), `guest` (watches) or `support`.
    pub role: String,
}

/// The session's members (any member may see them).
#[utoipa::path(get, path = "/api/v1/sessions/{id}/members", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, body = Vec<Member>), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_members(state: AppState, user: CurrentUser, Path(id): Path<Uuid>) -> Result<Json<Vec<Member>>> {
    db::find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?;
    let members = sqlx::query_as(
        "select u.username, u.display_name, m.role from session_members m join users u on u.id = m.user_id
         where m.session_id = $1 order by m.role = 'owner' desc, u.username",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(members))
}

/// Locks the session and checks the caller may manage its members (owner or admin).
async fn lock_as_manager(conn: &mut PgConnection, user: &CurrentUser, id: Uuid) -> Result<(Uuid, String)> {
    let visible = db::find_visible(&mut *conn, user, id).await?.ok_or(AppError::NotFound)?;
    let (owner, state): (Uuid, String) =
        sqlx::query_as("select owner_id, state from sessions where id = $1 for update")
            .bind(id)
            .fetch_one(conn)
            .await?;
    if owner != user.id && !user.is_admin() {
        return Err(AppError::Forbidden("only the session's owner may change its members".into()));
    }
    if !matches!(visible.state.as_str(), "requested" | "starting" | "running") {
        return Err(AppError::Conflict("the session has ended".into()));
    }
    Ok((owner, state))
}

/// Add a member, or change a member's role. Owner or admin only.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/members", tag = "sessions", request_body = AddMember,
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 201, body = Member), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_member(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(body): Json<AddMember>,
) -> Result<(axum::http::StatusCode, Json<Member>)> {
    if !matches!(body.role.as_str(), "user" | "guest" | "support") {
        return Err(AppError::invalid("role", "must be user, guest or support"));
    }
    let mut tx = state.db.begin().await?;
    let (owner, session_state) = lock_as_manager(&mut tx, &user, id).await?;
    let member: Option<(Uuid, String, String)> =
        sqlx::query_as("select id, username, display_name from users where username = $1 and enabled")
            .bind(&body.user)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((member_id, username, display_name)) = member else {
        return Err(AppError::invalid("user", "no such user"));
    };
    if member_id == owner {
        return Err(AppError::invalid("user", "the owner is a member already"));
    }
    sqlx::query(
        "insert into session_members (session_id, user_id, role) values ($1, $2, $3)
         on conflict (session_id, user_id) do update set role = excluded.role",
    )
    .bind(id)
    .bind(member_id)
    .bind(&body.role)
    .execute(&mut *tx)
    .await?;
    if body.role != "user" {
        // Only a `user` member may hold control.
        sqlx::query("update sessions set controller_id = null where id = $1 and controller_id = $2")
            .bind(id)
            .bind(member_id)
            .execute(&mut *tx)
            .await?;
    }
    super::events::add(&mut tx, id, &session_state, &format!("{username} joined as {}", body.role)).await?;
    crate::audit::record(
        &mut *tx,
        &actor,
        "session.member.add",
        "session",
        &id.to_string(),
        serde_json::json!({"user": username, "role": body.role}),
    )
    .await?;
    tx.commit().await?;
    Ok((axum::http::StatusCode::CREATED, Json(Member { username, display_name, role: body.role })))
}

/// Remove a member (the owner cannot be removed). Owner or admin only.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}/members/{username}", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id"), ("username" = String, Path, description = "The member")),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_member(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path((id, username)): Path<(Uuid, String)>,
) -> Result<axum::http::StatusCode> {
    let mut tx = state.db.begin().await?;
    let (owner, session_state) = lock_as_manager(&mut tx, &user, id).await?;
    let member: Option<Uuid> = sqlx::query_scalar(
        "delete from session_members m using users u
         where m.session_id = $1 and m.user_id = u.id and u.username = $2 and m.user_id <> $3 returning m.user_id",
    )
    .bind(id)
    .bind(&username)
    .bind(owner)
    .fetch_optional(&mut *tx)
    .await?;
    let member = member.ok_or(AppError::NotFound)?;
    sqlx::query("update sessions set controller_id = null where id = $1 and controller_id = $2")
        .bind(id)
        .bind(member)
        .execute(&mut *tx)
        .await?;
    super::events::add(&mut tx, id, &session_state, &format!("{username} left")).await?;
    crate::audit::record(
        &mut *tx,
        &actor,
        "session.member.remove",
        "session",
        &id.to_string(),
        serde_json::json!({"user": username}),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Control {
    /// The username of who controls the desktop now.
    pub controller: String,
    /// Whether the caller controls it (their keys and pointer reach the desktop).
    pub you_control: bool,
    /// Whether the caller may hand control over (the owner, or an admin).
    pub may_hand_over: bool,
    /// Members who may be handed control (the owner and `user` members).
    pub candidates: Vec<String>,
}

/// Who controls the desktop now: the owner unless it handed control to a `user` member.
pub async fn controller(db: impl sqlx::PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<(Uuid, String)>> {
    sqlx::query_as(
        "select u.id, u.username from sessions s join users u on u.id = coalesce(s.controller_id, s.owner_id)
         where s.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Who controls the desktop, and whether the caller may hand control over.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/control", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, body = Control), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_control(state: AppState, user: CurrentUser, Path(id): Path<Uuid>) -> Result<Json<Control>> {
    let session = db::find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?;
    let (controller_id, controller) = controller(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let candidates = sqlx::query_scalar(
        "select u.username from session_members m join users u on u.id = m.user_id
         where m.session_id = $1 and m.role in ('owner', 'user') order by m.role = 'owner' desc, u.username",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Control {
        controller,
        you_control: controller_id == user.id && session.role.as_deref() != Some("guest"),
        may_hand_over: session.role.as_deref() == Some("owner") || user.is_admin(),
        candidates,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct HandOver {
    /// The username of the member who takes control: a `user` member, or the owner (taking
    /// it back).
    pub user: String,
}

/// Hand control of the desktop to a `user` member, or take it back (owner or admin).
#[utoipa::path(put, path = "/api/v1/sessions/{id}/control", tag = "sessions", request_body = HandOver,
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, body = Control), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn hand_over_control(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(body): Json<HandOver>,
) -> Result<Json<Control>> {
    let mut tx = state.db.begin().await?;
    let (owner, session_state) = lock_as_manager(&mut tx, &user, id).await?;
    let target: Option<(Uuid, String)> = sqlx::query_as(
        "select m.user_id, m.role from session_members m join users u on u.id = m.user_id
         where m.session_id = $1 and u.username = $2",
    )
    .bind(id)
    .bind(&body.user)
    .fetch_optional(&mut *tx)
    .await?;
    let target = match target {
        Some((target, role)) if role == "owner" || role == "user" => target,
        Some(_) => return Err(AppError::invalid("user", "only the owner or a member with the role user may control")),
        None => return Err(AppError::invalid("user", "not a member of this session")),
    };
    sqlx::query("update sessions set controller_id = $2 where id = $1")
        .bind(id)
        .bind((target != owner).then_some(target))
        .execute(&mut *tx)
        .await?;
    super::events::add(&mut tx, id, &session_state, &format!("{} controls the desktop", body.user)).await?;
    crate::audit::record(
        &mut *tx,
        &actor,
        "session.control",
        "session",
        &id.to_string(),
        serde_json::json!({"user": body.user}),
    )
    .await?;
    tx.commit().await?;
    get_control(state, user, Path(id)).await
}
