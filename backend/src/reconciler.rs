//! The reconciler: keeps Postgres and what the runtime really runs in step. Each pass (the
//! first as soon as it starts, then one every interval, or at once when the lifecycle wakes
//! it) reads every live session of this runtime and:
//!
//! - finishes the stop of sessions in `stopping` (`lifecycle::stop::finish_stop`);
//! - starts those waiting to start that nothing in this process is starting
//!   (`lifecycle::launch::start`);
//! - observes the others and applies what it sees (`lifecycle::observe`), then asks
//!   expiry about the running ones (`lifecycle::expiry`);
//! - removes what runs without a live session in Postgres (orphans).
//!
//! The policy of each step lives in the lifecycle; this module only decides which step a
//! session is due. Errors policy: a failure on one session (the runtime or Postgres did
//! not answer) is logged and the session is looked at again at the next pass; it never
//! stops the pass for the others.

use std::collections::HashSet;

use uuid::Uuid;

use crate::sessions::db;
use crate::sessions::db::Live;
use crate::sessions::lifecycle::observe::observe;
use crate::sessions::lifecycle::{expiry, launch, stop, SessionState};
use crate::state::AppState;

/// Runs the reconciler until the task is aborted: a pass now, then one every interval or as
/// soon as the lifecycle wakes it. (`daas serve` runs one pass itself before taking
/// requests, so that what runs is adopted before anyone asks about it.)
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(err) = reconcile_once(&state).await {
                tracing::warn!(error = format!("{err:#}"), "reconcile pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(state.config.sessions.reconcile_interval) => {}
                _ = state.lifecycle.woken() => {}
            }
        }
    })
}

/// What a pass does about one live session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing now: this process is starting it (its launch task watches it), or it claims
    /// to run without a handle (which no runtime gives).
    Nothing,
    /// Stop what runs and mark it `stopped`.
    FinishStop,
    /// Hand it to the runtime.
    Start,
    /// Observe it (and, if it runs, check its expiry).
    Observe,
}

/// Which step a live session is due, from its state, whether the runtime returned a handle
/// for it, and whether this process is starting it.
pub fn due(state: SessionState, has_handle: bool, launching_here: bool) -> Due {
    match (state, has_handle) {
        _ if launching_here => Due::Nothing,
        (SessionState::Stopping, _) => Due::FinishStop,
        (_, false) if SessionState::LAUNCHING.contains(&state) => Due::Start,
        (_, true) => Due::Observe,
        _ => Due::Nothing,
    }
}

/// One pass over every live session of this runtime.
#[tracing::instrument(skip_all)]
pub async fn reconcile_once(state: &AppState) -> anyhow::Result<()> {
    // What runs, listed before reading Postgres: a session started after the read would
    // otherwise look like an orphan (its row is committed before anything of it runs).
    let running = state.runtime.list().await?;
    let sessions = db::all_live(&state.db, state.runtime.name()).await?;
    let live: HashSet<Uuid> = sessions.iter().map(|s| s.id).collect();
    for counted in [SessionState::Starting, SessionState::Running, SessionState::Stopping] {
        let n = sessions.iter().filter(|s| s.state == counted).count();
        metrics::gauge!("daas_sessions", "state" => counted.as_str()).set(n as f64);
    }
    let busy = state.lifecycle.launching();

    let mut tasks = tokio::task::JoinSet::new();
    for session in sessions {
        let state = state.clone();
        let launching_here = busy.contains(&session.id);
        tasks.spawn(async move {
            let id = session.id;
            if let Err(err) = reconcile_session(&state, session, launching_here).await {
                tracing::warn!(session.id = %id, error = format!("{err:#}"), "reconciling a session failed");
            }
        });
    }
    while tasks.join_next().await.is_some() {}

    // Orphans: running, but no live session in Postgres says so.
    for found in running {
        if !live.contains(&found.session_id) && !busy.contains(&found.session_id) {
            tracing::info!(session.id = %found.session_id, "removing an orphan");
            if let Err(err) = state.runtime.stop(found.session_id, &found.handle).await {
                tracing::warn!(session.id = %found.session_id, error = format!("{err:#}"), "cannot remove an orphan");
            }
        }
    }
    Ok(())
}

async fn reconcile_session(state: &AppState, session: Live, launching_here: bool) -> anyhow::Result<()> {
    let handle = session.handle();
    match due(session.state, handle.is_some(), launching_here) {
        Due::Nothing => {}
        Due::FinishStop => stop::finish_stop(state, session.id, handle.as_ref()).await?,
        Due::Start => launch::start(state.clone(), session.id),
        Due::Observe => {
            let handle = handle.expect("observed sessions have a handle");
            observe(state, &session, &handle).await?;
            state.runtime.keep_until(session.id, &handle, session.expires_at).await?;
            if session.state == SessionState::Running {
                expiry::check(state, &session).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{due, Due};
    use crate::sessions::lifecycle::SessionState::*;

    #[test]
    fn each_live_state_is_due_its_step_and_a_launch_under_way_is_left_to_its_task() {
        assert_eq!(due(Stopping, true, false), Due::FinishStop);
        assert_eq!(due(Stopping, false, false), Due::FinishStop, "a stop before the runtime had it");
        assert_eq!(due(Requested, false, false), Due::Start);
        assert_eq!(due(Starting, false, false), Due::Start, "adopted after a restart mid-launch");
        assert_eq!(due(Starting, true, false), Due::Observe);
        assert_eq!(due(Running, true, false), Due::Observe);
        assert_eq!(due(Running, false, false), Due::Nothing);
        for state in [Requested, Starting, Running, Stopping] {
            assert_eq!(due(state, false, true), Due::Nothing);
            assert_eq!(due(state, true, true), Due::Nothing);
        }
    }
}
