//! Who shares a session and who controls its desktop: members are invited by the owner (or
//! an admin) with a role (`user`, `guest`, `support`) and become members when they accept
//! (an invitee sees the invitation and nothing else of the session); one member controls
//! the desktop at a time, the owner unless the owner handed control to a `user` member.
//! Each change is also a session event, so open relays and pages learn of it at once.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::db::{self, Session};
pub use super::db::{Invitation, Member};
use super::lifecycle::SessionState;
use crate::audit::Actor;
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::{Json, Path};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members, add_member))
        .routes(routes!(remove_member))
        .routes(routes!(get_control, hand_over_control))
        .routes(routes!(list_invitations))
        .routes(routes!(accept_invitation))
        .routes(routes!(decline_invitation))
}

#[derive(Deserialize, ToSchema)]
pub struct AddMember {
    /// The username of the person to add.
    pub user: String,
    /// `user` (may control when handed control), `guest` (watches) or `support`.
    pub role: String,
}

/// The session's members and those invited (any member may see them).
#[utoipa::path(get, path = "/api/v1/sessions/{id}/members", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, body = Vec<Member>), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_members(state: AppState, user: CurrentUser, Path(id): Path<Uuid>) -> Result<Json<Vec<Member>>> {
    db::find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?;
    Ok(Json(db::members(&state.db, id).await?))
}

/// Locks the session and checks the caller may manage its members (owner or admin).
async fn lock_as_manager(conn: &mut PgConnection, user: &CurrentUser, id: Uuid) -> Result<(Uuid, SessionState)> {
    let visible = db::find_visible(&mut *conn, user, id).await?.ok_or(AppError::NotFound)?;
    let (owner, state) = db::lock_owner_and_state(conn, id).await?;
    if owner != user.id && !user.is_admin() {
        return Err(AppError::Forbidden("only the session's owner may change its members".into()));
    }
    if !SessionState::STOPPABLE.contains(&visible.state) {
        return Err(AppError::Conflict("the session has ended".into()));
    }
    Ok((owner, state))
}

/// Invite a member (who becomes one on accepting, see `/api/v1/invitations`), or change the
/// role of a member or invitee. Owner or admin only.
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
    let Some(member) = crate::auth::users::enabled(&mut *tx, &body.user).await? else {
        return Err(AppError::invalid("user", "no such user"));
    };
    let (member_id, username, display_name) = (member.id, member.username.clone(), member.display_name.clone());
    if member_id == owner {
        return Err(AppError::invalid("user", "the owner is a member already"));
    }
    // A session shows its proposal's data: only those who may see the proposal may join
    // (its members, its beamline's scientists, admins).
    let experiment = db::experiment_of(&mut *tx, id).await?;
    if crate::proposals::db::visible_experiment(&mut *tx, &member, experiment).await?.is_none() {
        let (proposal, beamline) = db::proposal_and_beamline(&mut *tx, experiment).await?;
        return Err(AppError::invalid(
            "user",
            format!(
                "{username} is neither a member of proposal {proposal} nor staff of beamline {beamline}: \
                 the session shows that proposal's data, so only they may join it"
            ),
        ));
    }
    // A new member is invited; one already there keeps whether they accepted.
    let accepted = db::invite_member(&mut tx, id, member_id, &body.role).await?;
    let status = if accepted { "accepted" } else { "invited" };
    if body.role != "user" {
        // Only a `user` member may hold control.
        db::release_control(&mut tx, id, member_id).await?;
    }
    let message = if accepted {
        format!("{username} is now {}", body.role)
    } else {
        format!("{username} invited as {}", body.role)
    };
    super::events::add(&mut tx, id, session_state, &message).await?;
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
    Ok((
        axum::http::StatusCode::CREATED,
        Json(Member { username, display_name, role: body.role, status: status.into() }),
    ))
}

/// Remove a member, or withdraw an invitation (the owner cannot be removed). Owner or
/// admin only.
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
    let member = db::delete_member(&mut tx, id, &username, owner).await?.ok_or(AppError::NotFound)?;
    db::release_control(&mut tx, id, member).await?;
    super::events::add(&mut tx, id, session_state, &format!("{username} left")).await?;
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
    /// Members who may be handed control (the owner and `user` members who accepted).
    pub candidates: Vec<String>,
}

/// Who controls the desktop, and whether the caller may hand control over.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/control", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, body = Control), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_control(state: AppState, user: CurrentUser, Path(id): Path<Uuid>) -> Result<Json<Control>> {
    let session = db::find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?;
    let (controller_id, controller) = db::controller(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let candidates = db::control_candidates(&state.db, id).await?;
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
    let target = match db::accepted_member(&mut tx, id, &body.user).await? {
        Some((target, role)) if role == "owner" || role == "user" => target,
        Some(_) => return Err(AppError::invalid("user", "only the owner or a member with the role user may control")),
        None => return Err(AppError::invalid("user", "not a member of this session")),
    };
    db::set_controller(&mut tx, id, (target != owner).then_some(target)).await?;
    super::events::add(&mut tx, id, session_state, &format!("{} controls the desktop", body.user)).await?;
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

/// The caller's invitations to other people's sessions (those that have not ended).
#[utoipa::path(get, path = "/api/v1/invitations", tag = "sessions",
    responses((status = 200, body = Vec<Invitation>), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_invitations(state: AppState, user: CurrentUser) -> Result<Json<Vec<Invitation>>> {
    Ok(Json(db::invitations(&state.db, user.id).await?))
}

/// Locks the session, then the caller's row in it: `(accepted, role, session state)`; 404
/// when the caller was never invited (nor is a member).
async fn lock_own_row(conn: &mut PgConnection, user: &CurrentUser, id: Uuid) -> Result<(bool, String, SessionState)> {
    // The session first, in the order `lock_as_manager` takes them.
    let session_state = db::lock_state(&mut *conn, id).await?.ok_or(AppError::NotFound)?;
    let (accepted, role) = db::lock_membership(conn, id, user.id).await?.ok_or(AppError::NotFound)?;
    Ok((accepted, role, session_state))
}

fn is_live(state: SessionState) -> bool {
    SessionState::STOPPABLE.contains(&state)
}

/// Accept an invitation: the caller becomes a member with the role offered, and the
/// session is theirs to open. Answers the session; accepting twice changes nothing.
#[utoipa::path(post, path = "/api/v1/invitations/{id}/accept", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, body = Session), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "the session has ended", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn accept_invitation(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Json<Session>> {
    accept(&state, &user, &actor, id).await?;
    Ok(Json(db::find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?))
}

/// Makes the caller a member with the role they were offered (once; again changes
/// nothing). 404 when they were not invited, 409 when the session has ended.
pub async fn accept(state: &AppState, user: &CurrentUser, actor: &Actor, id: Uuid) -> Result<()> {
    let mut tx = state.db.begin().await?;
    let (accepted, role, session_state) = lock_own_row(&mut tx, user, id).await?;
    if !accepted {
        if !is_live(session_state) {
            return Err(AppError::Conflict("the session has ended".into()));
        }
        db::mark_accepted(&mut tx, id, user.id).await?;
        let message = format!("{} accepted and joined as {role}", user.username);
        super::events::add(&mut tx, id, session_state, &message).await?;
        crate::audit::record(
            &mut *tx,
            actor,
            "session.member.accept",
            "session",
            &id.to_string(),
            serde_json::json!({"role": role}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Decline an invitation: it is gone, and the owner may invite again.
#[utoipa::path(post, path = "/api/v1/invitations/{id}/decline", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 204), (status = 404, description = "no invitation to this session", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn decline_invitation(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::http::StatusCode> {
    decline(&state, &user, &actor, id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Removes the caller's invitation. 404 when there is none (a member leaves by being
/// removed).
pub async fn decline(state: &AppState, user: &CurrentUser, actor: &Actor, id: Uuid) -> Result<()> {
    let mut tx = state.db.begin().await?;
    let (accepted, _, session_state) = lock_own_row(&mut tx, user, id).await?;
    if accepted {
        // A member leaves by being removed; there is no invitation left to decline.
        return Err(AppError::NotFound);
    }
    db::delete_invitation(&mut tx, id, user.id).await?;
    if is_live(session_state) {
        let message = format!("{} declined the invitation", user.username);
        super::events::add(&mut tx, id, session_state, &message).await?;
    }
    crate::audit::record(&mut *tx, actor, "session.member.decline", "session", &id.to_string(), serde_json::json!({}))
        .await?;
    tx.commit().await?;
    Ok(())
}
