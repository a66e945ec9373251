//! Stopping, from whoever asks to the runtime. Asking is one transaction: each session
//! still live moves to `stopping` with an event and an audit entry (`stop`,
//! `request_stop`), and the reconciler is woken. Whoever watches the session then stops
//! what the runtime runs and marks it `stopped` (`finish_stop`): the reconciler, or the
//! launch task while the session is still starting in this process. A session that ends
//! by itself or cannot go on is ended by `end`.

use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::state::{transition, SessionState};
use crate::audit::{self, Actor};
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};
use crate::runtime::Handle;
use crate::sessions::db;
use crate::state::AppState;

/// Who asks, and so which sessions they may stop.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// An admin: every session.
    All,
    /// A beamline's staff: the sessions on the experiments of that beamline.
    Beamline(&'a str),
    /// A member of the session: its owner and its users (guests and support may not
    /// stop; an admin may stop any session).
    Member(&'a CurrentUser),
}

impl<'a> Scope<'a> {
    /// The beamline the sessions must be on, if any.
    pub fn beamline(self) -> Option<&'a str> {
        match self {
            Scope::Beamline(b) => Some(b),
            Scope::All | Scope::Member(_) => None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StopResult {
    /// Now `stopping` (the reconciler stops them), or `stopped` already when their start
    /// had not begun.
    pub stopping: Vec<Uuid>,
    /// Already stopping, stopped or failed: left as they were.
    pub unchanged: Vec<Uuid>,
}

/// Asks for the live ones of `ids` (1 to 500, each counted once) to stop, in one
/// transaction, and wakes the reconciler. An id that is not in `scope` (or does not exist)
/// makes the whole request a 404 that changes nothing, so a beamline's staff learn nothing
/// of other beamlines' sessions; a member who may not stop gets a 403.
pub async fn stop(state: &AppState, actor: &Actor, scope: Scope<'_>, ids: &[Uuid]) -> Result<StopResult> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    if ids.is_empty() || ids.len() > 500 {
        return Err(AppError::invalid("ids", "name 1 to 500 sessions"));
    }
    let ids = &ids[..];
    let mut tx = state.db.begin().await?;
    if let Scope::Member(user) = scope {
        for &id in ids {
            let session = db::find_visible(&mut *tx, user, id).await?.ok_or(AppError::NotFound)?;
            if !user.is_admin() && !matches!(session.role.as_deref(), Some("owner" | "user")) {
                return Err(AppError::Forbidden("only the session's owner and its users may stop it".into()));
            }
        }
    }
    let rows = db::lock_for_stop(&mut tx, ids, scope.beamline()).await?;
    if rows.len() != ids.len() {
        return Err(AppError::NotFound);
    }
    let mut result = StopResult { stopping: Vec::new(), unchanged: Vec::new() };
    for (id, from) in rows {
        let (message, by) = match scope {
            Scope::All => (format!("Stop requested by the administrator {}", actor.name), "admin"),
            Scope::Beamline(b) => (format!("Stop requested by {}, staff of beamline {b}", actor.name), "beamline"),
            Scope::Member(_) if from == SessionState::Running => {
                (format!("Stop requested by {}", actor.name), "member")
            }
            Scope::Member(_) => (format!("Launch cancelled by {}", actor.name), "member"),
        };
        if !request_stop(&mut tx, id, &message).await? {
            result.unchanged.push(id);
            continue;
        }
        let mut details = json!({"from": from, "by": by});
        if let Some(beamline) = scope.beamline() {
            details["beamline"] = json!(beamline);
        }
        audit::record(&mut *tx, actor, "session.stop", "session", &id.to_string(), details).await?;
        result.stopping.push(id);
    }
    tx.commit().await?;
    if !result.stopping.is_empty() {
        state.lifecycle.wake();
    }
    Ok(result)
}

/// Asks for a session to stop (the contract every part of daas uses, expiry included):
/// `stopping` plus an event, in the caller's transaction; the reconciler does the rest
/// once woken. A launch still waiting for its turn has nothing in the runtime to stop: it
/// is `stopped` at once (its wait ends at its next look). Returns false when it had already
/// ended or was stopping.
pub async fn request_stop(conn: &mut PgConnection, id: Uuid, message: &str) -> sqlx::Result<bool> {
    match db::lock_state(&mut *conn, id).await? {
        Some(from) if SessionState::STOPPABLE.contains(&from) => {
            transition(conn, id, SessionState::Stopping, message).await?;
            if SessionState::LAUNCHING.contains(&from) && !db::start_began(&mut *conn, id).await? {
                transition(conn, id, SessionState::Stopped, "Stopped before it started").await?;
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The second half of a stop (the reconciler's, or the launch task's): stops what runs,
/// if anything, then marks the session `stopped` if it is `stopping`.
pub async fn finish_stop(state: &AppState, id: Uuid, handle: Option<&Handle>) -> anyhow::Result<()> {
    if let Some(handle) = handle {
        state.runtime.stop(id, handle).await?;
    }
    let mut tx = state.db.begin().await?;
    if db::lock_state(&mut tx, id).await? == Some(SessionState::Stopping) {
        transition(&mut tx, id, SessionState::Stopped, "Stopped").await?;
    }
    tx.commit().await?;
    Ok(())
}

/// How a session ends by itself, or why it cannot go on.
#[derive(Clone, Debug, PartialEq)]
pub struct Ending {
    /// The states it may end from (a start that timed out: only `starting`).
    pub from: &'static [SessionState],
    /// `stopped` (a job that finished) or `failed`.
    pub to: SessionState,
    /// For a person; a failure's reason.
    pub message: String,
    /// A job's exit code, when its processes exited (`Some(None)`: killed by a signal).
    pub exit_code: Option<Option<i32>>,
}

/// Ends a session if it is still in one of `ending.from`: records a job's exit code, moves it
/// to `ending.to` with the message (the session's secret blanked out of it), then removes
/// what is left of it in the runtime.
pub async fn end(state: &AppState, id: Uuid, handle: &Handle, ending: Ending) -> anyhow::Result<()> {
    let mut tx = state.db.begin().await?;
    if let Some((_, secret)) =
        db::lock_state_and_secret(&mut tx, id).await?.filter(|(from, _)| ending.from.contains(from))
    {
        if let Some(code) = ending.exit_code {
            db::set_exit_code(&mut tx, id, code).await?;
        }
        // The output quoted in a reason may hold the session's token (Jupyter prints its
        // URL with it), and every member of the session reads the reason.
        let message = match secret.filter(|s| !s.is_empty()) {
            Some(secret) => ending.message.replace(&secret, "[secret]"),
            None => ending.message,
        };
        transition(&mut tx, id, ending.to, &message).await?;
        tracing::info!(session.id = %id, state = %ending.to, "session ended");
    }
    tx.commit().await?;
    state.runtime.stop(id, handle).await
}
