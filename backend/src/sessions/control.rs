//! Who controls a shared desktop. One member at a time: the owner, unless control was
//! handed to a `user` member. A `user` member asks for it (`request`); whoever holds it,
//! the owner or an admin answers (`answer`); the owner (or an admin) may hand it over or
//! take it back at any time (`PUT`). The desktop relay enforces the answer: it re-reads
//! the controller on every event of the session, so keys stop or start arriving at once.
//! Each change is a session event, which is how open pages and relays learn of it.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::db;
use super::lifecycle::SessionState;
use super::members::lock_as_manager;
use crate::audit::Actor;
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::{Json, Path};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_control, hand_over_control))
        .routes(routes!(request_control))
        .routes(routes!(answer_control_request))
}

/// Someone connected to the desktop now.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Viewer {
    pub username: String,
    pub display_name: String,
    /// The role they connected with (`owner`, `user`, `guest`, `support`, or `admin`).
    pub role: String,
    /// Since when (the earliest of their open connections).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Control {
    /// The username of who controls the desktop now.
    pub controller: String,
    /// Whether the caller controls it (their keys and pointer reach the desktop).
    pub you_control: bool,
    /// The caller's role in the session (`None` for an admin who is not a member).
    pub role: Option<String>,
    /// Whether the caller may hand control over or take it back (the owner, or an admin).
    pub may_hand_over: bool,
    /// Members who may be handed control (the owner and `user` members who accepted).
    pub candidates: Vec<String>,
    /// Who asked for control and waits for an answer.
    pub requested_by: Option<String>,
    /// Whether the caller may answer that request (whoever controls, the owner, an admin).
    pub may_answer: bool,
    /// Whether the caller may ask for control (a `user` member who does not hold it).
    pub may_request: bool,
    /// Who is connected to the desktop now, one entry per person.
    pub connected: Vec<Viewer>,
}

/// Who controls the desktop, who asks for it, who is connected, and what the caller may do.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/control", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, body = Control), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_control(state: AppState, user: CurrentUser, Path(id): Path<Uuid>) -> Result<Json<Control>> {
    let session = db::find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?;
    let (controller_id, controller) = db::controller(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let candidates = db::control_candidates(&state.db, id).await?;
    let requested_by = db::control_request(&state.db, id).await?.map(|(_, name)| name);
    let role = session.role;
    let manages = role.as_deref() == Some("owner") || user.is_admin();
    let you_control = controller_id == user.id && role.as_deref() != Some("guest");
    Ok(Json(Control {
        controller,
        you_control,
        may_hand_over: manages,
        candidates,
        may_answer: requested_by.is_some() && (you_control || manages),
        may_request: role.as_deref() == Some("user") && !you_control,
        requested_by,
        role,
        connected: super::access::connected(&state.db, id, "desktop").await?,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct HandOver {
    /// The username of the member who takes control: a `user` member, or the owner (taking
    /// it back).
    pub user: String,
}

/// Hand control of the desktop to a `user` member, or take it back (owner or admin). A
/// request waiting for an answer is settled by it.
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
    let target = may_control(&mut tx, id, &body.user).await?;
    give_control(&mut tx, &actor, id, owner, session_state, target, &body.user).await?;
    tx.commit().await?;
    get_control(state, user, Path(id)).await
}

/// The id of `username` when they may hold control: the owner, or a `user` member who
/// accepted. 400 naming the field otherwise.
async fn may_control(conn: &mut PgConnection, id: Uuid, username: &str) -> Result<Uuid> {
    match db::accepted_member(conn, id, username).await? {
        Some((target, role)) if role == "owner" || role == "user" => Ok(target),
        Some(_) => Err(AppError::invalid("user", "only the owner or a member who may control can control")),
        None => Err(AppError::invalid("user", "not a member of this session")),
    }
}

/// Gives control to `target` (called `username`), settles any request, and records it.
async fn give_control(
    conn: &mut PgConnection,
    actor: &Actor,
    id: Uuid,
    owner: Uuid,
    session_state: SessionState,
    target: Uuid,
    username: &str,
) -> Result<()> {
    db::set_controller(conn, id, (target != owner).then_some(target)).await?;
    db::clear_control_request(conn, id, None).await?;
    super::events::add(conn, id, session_state, &format!("{username} controls the desktop")).await?;
    crate::audit::record(
        &mut *conn,
        actor,
        "session.control",
        "session",
        &id.to_string(),
        serde_json::json!({"user": username}),
    )
    .await?;
    Ok(())
}

/// Ask for control of the desktop (a `user` member who does not hold it). Whoever controls
/// it, the owner or an admin is asked; a newer request replaces an older one.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/control/request", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, body = Control), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn request_control(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Json<Control>> {
    let mut tx = state.db.begin().await?;
    let session = db::find_visible(&mut *tx, &user, id).await?.ok_or(AppError::NotFound)?;
    let session_state = db::lock_state(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    if session_state != SessionState::Running {
        return Err(AppError::Conflict("the desktop is not running".into()));
    }
    match session.role.as_deref() {
        Some("user") => {}
        Some("owner") => return Err(AppError::Conflict("the owner takes control back without asking".into())),
        _ => return Err(AppError::Forbidden("your role lets you watch, not control".into())),
    }
    let (controller, _) = db::controller(&mut *tx, id).await?.ok_or(AppError::NotFound)?;
    if controller == user.id {
        return Err(AppError::Conflict("you control the desktop already".into()));
    }
    db::set_control_request(&mut tx, id, user.id).await?;
    super::events::add(&mut tx, id, session_state, &format!("{} asks for control of the desktop", user.username))
        .await?;
    crate::audit::record(
        &mut *tx,
        &actor,
        "session.control.request",
        "session",
        &id.to_string(),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    get_control(state, user, Path(id)).await
}

#[derive(Deserialize, ToSchema)]
pub struct Answer {
    /// `true` hands control to who asked; `false` declines.
    pub accept: bool,
}

/// Answer the request for control: whoever controls the desktop, its owner or an admin.
/// Accepting hands control over at once.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/control/answer", tag = "sessions", request_body = Answer,
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, body = Control), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "no request waits for an answer", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn answer_control_request(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(body): Json<Answer>,
) -> Result<Json<Control>> {
    let mut tx = state.db.begin().await?;
    let session = db::find_visible(&mut *tx, &user, id).await?.ok_or(AppError::NotFound)?;
    let (owner, session_state) = db::lock_owner_and_state(&mut tx, id).await?;
    let (controller, _) = db::controller(&mut *tx, id).await?.ok_or(AppError::NotFound)?;
    let manages = owner == user.id || user.is_admin();
    if controller != user.id && !manages {
        return Err(AppError::Forbidden("only whoever controls the desktop, or its owner, may answer".into()));
    }
    if session.role.as_deref() == Some("guest") && !manages {
        return Err(AppError::Forbidden("your role lets you watch, not control".into()));
    }
    let Some((_, name)) = db::control_request(&mut *tx, id).await? else {
        return Err(AppError::Conflict("nobody asks for control".into()));
    };
    if body.accept {
        let target = may_control(&mut tx, id, &name).await?;
        give_control(&mut tx, &actor, id, owner, session_state, target, &name).await?;
    } else {
        db::clear_control_request(&mut tx, id, None).await?;
        let message = format!("{} declined {name}'s request for control", user.username);
        super::events::add(&mut tx, id, session_state, &message).await?;
        crate::audit::record(
            &mut *tx,
            &actor,
            "session.control.decline",
            "session",
            &id.to_string(),
            serde_json::json!({"user": name}),
        )
        .await?;
    }
    tx.commit().await?;
    get_control(state, user, Path(id)).await
}
