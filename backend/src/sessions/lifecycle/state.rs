//! The states of a session, the one place their names are spelled, and the one way a
//! session moves between them (`transition`). The `sessions.state` and
//! `session_events.state` columns hold these names (the schema checks them); SQL takes them
//! as bound parameters (`s.state = any($2)` with `SessionState::ACTIVE`), never as literals.
//!
//! ```text
//! starting --> running --> stopping --> stopped
//! starting, running --> stopping         asked to stop (from starting: a cancel)
//! running --> stopped                    a job that exits 0
//! starting, running --> failed           with the reason, for a person
//! ```
//!
//! A launch records `starting` (its first event says `requested`); a row in `requested`
//! is one an older daas recorded, and is started like one in `starting`.

use std::fmt;

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
// Binds as `text` (and a slice as `text[]`, for `state = any($n)`).
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum SessionState {
    /// Recorded, not yet handed to the runtime: the state of a launch's first event (rows
    /// start in `starting`; older ones may be in `requested`).
    Requested,
    /// Handed to the runtime; not answering yet.
    Starting,
    /// Answering (a desktop or notebook) or working (a job).
    Running,
    /// Asked to stop; the reconciler stops what runs.
    Stopping,
    /// Ended: stopped by someone, expired, or a job that finished.
    Stopped,
    /// Ended with a reason a person can read (`failure_reason`).
    Failed,
}

impl SessionState {
    /// Every state, in lifecycle order.
    pub const ALL: [SessionState; 6] = [
        SessionState::Requested,
        SessionState::Starting,
        SessionState::Running,
        SessionState::Stopping,
        SessionState::Stopped,
        SessionState::Failed,
    ];
    /// States in which a session holds resources and counts against quotas.
    pub const ACTIVE: &'static [SessionState] =
        &[SessionState::Requested, SessionState::Starting, SessionState::Running, SessionState::Stopping];
    /// States in which a session may still be asked to stop (a stop cancels a launch).
    pub const STOPPABLE: &'static [SessionState] =
        &[SessionState::Requested, SessionState::Starting, SessionState::Running];
    /// States waiting for the runtime to start them.
    pub const LAUNCHING: &'static [SessionState] = &[SessionState::Requested, SessionState::Starting];
    /// States a session that is starting or running can end from by itself.
    pub const UNDER_WAY: &'static [SessionState] = &[SessionState::Starting, SessionState::Running];
    /// The two ends.
    pub const ENDED: &'static [SessionState] = &[SessionState::Stopped, SessionState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Requested => "requested",
            SessionState::Starting => "starting",
            SessionState::Running => "running",
            SessionState::Stopping => "stopping",
            SessionState::Stopped => "stopped",
            SessionState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Has ended (one of `ENDED`).
    pub fn has_ended(self) -> bool {
        Self::ENDED.contains(&self)
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Moves a session to `to` with an event saying why, in the caller's transaction. Sets the
/// timestamps the schema's checks ask for (`started_at` on `running`, `stopped_at` on an
/// end); `failed` takes `message` as its reason; progress is kept only while it starts
/// or runs.
pub async fn transition(conn: &mut PgConnection, id: Uuid, to: SessionState, message: &str) -> sqlx::Result<()> {
    sqlx::query(
        "update sessions set state = $2,
             started_at = case when $2 = $4 then coalesce(started_at, now()) else started_at end,
             stopped_at = case when $2 = any($5) then coalesce(stopped_at, now()) else stopped_at end,
             failure_reason = case when $2 = $6 then $3 else failure_reason end,
             progress = case when $2 = any($7) then progress else null end
         where id = $1",
    )
    .bind(id)
    .bind(to)
    .bind(message)
    .bind(SessionState::Running)
    .bind(SessionState::ENDED)
    .bind(SessionState::Failed)
    .bind(SessionState::UNDER_WAY)
    .execute(&mut *conn)
    .await?;
    crate::sessions::events::add(conn, id, to, message).await
}

#[cfg(test)]
mod tests {
    use super::SessionState;

    #[test]
    fn names_round_trip_and_the_sets_partition_the_states() {
        for state in SessionState::ALL {
            assert_eq!(SessionState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
            assert_ne!(SessionState::ACTIVE.contains(&state), state.has_ended(), "{state} is either active or ended");
        }
        assert_eq!(SessionState::parse("paused"), None);
    }

    /// The rule of this module: the names are spelled here and nowhere else in daas's Rust
    /// code (its benchmarks too) or pages (SQL binds them; pages ask the enum). The browser's
    /// scripts and the tests read the API, where the names are its contract; the schema
    /// checks them in the migrations.
    #[test]
    fn no_other_source_or_page_spells_a_state() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut offenders = Vec::new();
        let mut folders = vec![root.join("src"), root.join("examples"), root.join("../frontend/templates")];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                    continue;
                }
                if path.ends_with("sessions/lifecycle/state.rs") {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&path) else { continue };
                for state in SessionState::ALL {
                    for quoted in [format!("'{state}'"), format!("\"{state}\"")] {
                        if text.contains(&quoted) {
                            offenders.push(format!("{} spells {quoted}", path.display()));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "{offenders:#?}");
    }
}
