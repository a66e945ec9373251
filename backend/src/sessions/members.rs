//! Who shares a session and who controls its desktop: members are invited by the owner (or
//! an admin) with a role (`user`, `guest`, `support`) and become members when they accept
//! (an invitee sees the invitation and nothing else of the session); one member controls
//! the desktop at a time, the owner unless the owner handed control to a `user` member.
//! Each change is also a session event, so open relays and pages learn of it at once.

use serde::Deserialize;
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
        .routes(routes!(list_invitations))
        .routes(routes!(accept_invitation))
        .routes(routes!(decline_invitation))
}

#[derive(Deserialize, ToSchema)]
pub struct AddMember {
    /// The person to add: their username, e-mail address or name (one enabled account).
    pub user: String,
    /// `user` (may control when handed control), `guest` (watches) or `support`
    /// (beamline staff who help).
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
pub(super) async fn lock_as_manager(
    conn: &mut PgConnection,
    user: &CurrentUser,
    id: Uuid,
) -> Result<(Uuid, SessionState)> {
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
    Ok((axum::http::StatusCode::CREATED, Json(add(&state, &user, &actor, id, &body).await?)))
}

/// Invites `body.user` with `body.role`, or changes their role (the share dialog and the
/// API): owner or admin.
pub async fn add(state: &AppState, user: &CurrentUser, actor: &Actor, id: Uuid, body: &AddMember) -> Result<Member> {
    if !matches!(body.role.as_str(), "user" | "guest" | "support") {
        return Err(AppError::invalid("role", "must be user, guest or support"));
    }
    let mut tx = state.db.begin().await?;
    let (owner, session_state) = lock_as_manager(&mut tx, user, id).await?;
    let member = find_person(&mut tx, body.user.trim()).await?;
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
        // Only a `user` member may hold control, or ask for it.
        db::release_control(&mut tx, id, member_id).await?;
        db::clear_control_request(&mut tx, id, Some(member_id)).await?;
    }
    let words = super::sharing::role_words(&body.role);
    let message =
        if accepted { format!("{username}'s role is now: {words}") } else { format!("{username} invited: {words}") };
    super::events::add(&mut tx, id, session_state, &message).await?;
    crate::audit::record(
        &mut *tx,
        actor,
        "session.member.add",
        "session",
        &id.to_string(),
        serde_json::json!({"user": username, "role": body.role}),
    )
    .await?;
    tx.commit().await?;
    Ok(Member { username, display_name, role: body.role.clone(), status: status.into() })
}

/// Remove a member, or withdraw an invitation (the owner cannot be removed). Owner or
/// admin only. Their open connections close at once (the relays and the notebook proxy
/// follow the session's events), and the session's secret is replaced where the runtime
/// can, so nothing they may have read inside the session opens it any more.
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
    remove(&state, &user, &actor, id, &username).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Removes `username` from the session (or withdraws their invitation): owner or admin.
pub async fn remove(state: &AppState, user: &CurrentUser, actor: &Actor, id: Uuid, username: &str) -> Result<()> {
    let mut tx = state.db.begin().await?;
    let (owner, session_state) = lock_as_manager(&mut tx, user, id).await?;
    let (member, was_inside) = db::delete_member(&mut tx, id, username, owner).await?.ok_or(AppError::NotFound)?;
    db::release_control(&mut tx, id, member).await?;
    db::clear_control_request(&mut tx, id, Some(member)).await?;
    if was_inside {
        super::events::add(&mut tx, id, session_state, &format!("{username} was removed")).await?;
        rotate_secret(state, &mut tx, id, session_state).await?;
    } else {
        super::events::add(&mut tx, id, session_state, &format!("{username}'s invitation was withdrawn")).await?;
    }
    crate::audit::record(
        &mut *tx,
        actor,
        "session.member.remove",
        "session",
        &id.to_string(),
        serde_json::json!({"user": username}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The enabled user whose username is `who`, or the one enabled user with that e-mail
/// address or that name (both case-insensitive); 400 on the `user` field otherwise.
async fn find_person(conn: &mut PgConnection, who: &str) -> Result<CurrentUser> {
    if who.contains('@') {
        let mut found = db::enabled_by_email(conn, who).await?;
        return match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(AppError::invalid("user", format!("nobody has the e-mail address {who}"))),
            _ => {
                Err(AppError::invalid("user", format!("several people have the e-mail address {who}: give a username")))
            }
        };
    }
    if let Some(user) = crate::auth::users::enabled(&mut *conn, who).await? {
        return Ok(user);
    }
    let mut found = db::enabled_by_name(conn, who).await?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(AppError::invalid("user", format!("nobody has the username or name {who}"))),
        _ => Err(AppError::invalid(
            "user",
            format!("several people are called {who}: give a username or an e-mail address"),
        )),
    }
}

/// Gives a running desktop or notebook a new secret (`Runtime::rotate_secret`) and records
/// it, inside the caller's transaction (which holds the session's row). A runtime that
/// cannot, or fails to, leaves the old secret in place and says so in an event: the
/// removal stands either way, since only daas's proxy (which checks membership at every
/// connection and request) reaches a session.
async fn rotate_secret(state: &AppState, tx: &mut PgConnection, id: Uuid, session_state: SessionState) -> Result<()> {
    let Some((kind, runtime, handle)) = db::rotatable(&mut *tx, id).await? else { return Ok(()) };
    if runtime != state.runtime.name() || session_state != SessionState::Running {
        return Ok(());
    }
    let Some(kind) = crate::runtime::Kind::parse(&kind) else { return Ok(()) };
    let secret = super::lifecycle::launch::new_secret();
    let handle = crate::runtime::Handle(handle);
    let note = match state.runtime.rotate_secret(id, &handle, kind, &secret).await {
        Ok(true) => {
            db::set_secret(&mut *tx, id, &secret).await?;
            "its secret was replaced"
        }
        Ok(false) => "its secret stays until it stops (this runtime cannot replace it while it runs)",
        Err(err) => {
            tracing::warn!(session.id = %id, error = format!("{err:#}"), "cannot replace the session's secret");
            "its secret could not be replaced; it stays until the session stops"
        }
    };
    super::events::add(tx, id, session_state, note).await?;
    Ok(())
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
        let message = format!("{} accepted and joined: {}", user.username, super::sharing::role_words(&role));
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
