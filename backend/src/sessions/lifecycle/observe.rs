//! What the runtime sees of a session, turned into a step of its lifecycle: `decide` is
//! the whole policy and does no I/O (its tests run in microseconds); `apply` carries the
//! step out as a guarded transition, so the launch task, the reconciler and a second daas
//! never apply the same change twice.

use std::time::Duration;

use time::OffsetDateTime;

use super::state::{transition, SessionState};
use super::stop::{end, Ending};
use crate::runtime::{Handle, Kind, Observed};
use crate::sessions::db::{self, Live};
use crate::sessions::events;
use crate::state::AppState;

/// One step of a live session's lifecycle.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Nothing changes.
    Wait,
    /// A new progress message while it starts.
    Progress(String),
    /// It answers at `endpoint`: `running`.
    Run { endpoint: String },
    /// It did not answer within the startup timeout: `failed`, quoting its last output.
    TimedOut { reason: String },
    /// It ended by itself, or cannot go on.
    End(Ending),
}

/// The step for a session that has a handle, from what the runtime sees of it `now`. The
/// startup timeout counts from the start (a wait in the start queue is not the session's).
pub fn decide(live: &Live, observed: Observed, now: OffsetDateTime, startup_timeout: Duration) -> Step {
    let starting = live.state == SessionState::Starting;
    let began = live.start_began_at.unwrap_or(live.created_at);
    match observed {
        Observed::Pending { message } if starting && now - began > startup_timeout => Step::TimedOut {
            reason: format!("did not become ready within {} s ({message})", startup_timeout.as_secs()),
        },
        Observed::Pending { message } if starting && live.progress.as_deref() != Some(message.as_str()) => {
            Step::Progress(message)
        }
        Observed::Pending { .. } => Step::Wait,
        Observed::Running { endpoint } if starting => Step::Run { endpoint },
        Observed::Running { .. } => Step::Wait,
        Observed::Exited { exit_code: Some(0), .. } if live.kind == Kind::Job => Step::End(Ending {
            from: SessionState::UNDER_WAY,
            to: SessionState::Stopped,
            message: "Finished (exit code 0)".into(),
            exit_code: Some(Some(0)),
        }),
        Observed::Exited { exit_code, message } => Step::End(Ending {
            from: SessionState::UNDER_WAY,
            to: SessionState::Failed,
            message: format!("{} {message}", live.image),
            exit_code: Some(exit_code),
        }),
        Observed::Failed { reason } => Step::End(failed(reason)),
        Observed::Gone => {
            Step::End(failed("its processes are gone (stopped outside daas, or the machine restarted)".into()))
        }
    }
}

fn failed(message: String) -> Ending {
    Ending { from: SessionState::UNDER_WAY, to: SessionState::Failed, message, exit_code: None }
}

/// Observes a session that has a handle, decides its step and carries it out.
pub async fn observe(state: &AppState, live: &Live, handle: &Handle) -> anyhow::Result<()> {
    let observed = state.runtime.observe(live.id, handle).await?;
    let step = decide(live, observed, OffsetDateTime::now_utc(), state.config.sessions.startup_timeout);
    apply(state, live, handle, step).await
}

/// Carries out `step` for the session.
async fn apply(state: &AppState, live: &Live, handle: &Handle, step: Step) -> anyhow::Result<()> {
    let id = live.id;
    match step {
        Step::Wait => {}
        Step::Progress(message) => {
            let mut tx = state.db.begin().await?;
            if db::set_progress(&mut tx, id, &message).await? {
                events::add(&mut tx, id, SessionState::Starting, &message).await?;
            }
            tx.commit().await?;
        }
        Step::Run { endpoint } => {
            let mut tx = state.db.begin().await?;
            if db::set_endpoint(&mut tx, id, &endpoint).await? {
                transition(&mut tx, id, SessionState::Running, "Running").await?;
                // Before the commit: whoever sees the `running` event finds the start
                // in the metrics too (recorded after, a reader raced it).
                let seconds = (OffsetDateTime::now_utc() - live.created_at).as_seconds_f64();
                metrics::histogram!("daas_session_start_seconds", "kind" => live.kind.as_str()).record(seconds);
            }
            tx.commit().await?;
        }
        Step::TimedOut { mut reason } => {
            let logs = state.runtime.logs(id, handle, 10).await.unwrap_or_default();
            if !logs.is_empty() {
                reason.push_str(&format!("; last output:\n{logs}"));
            }
            let ending =
                Ending { from: &[SessionState::Starting], to: SessionState::Failed, message: reason, exit_code: None };
            end(state, id, handle, ending).await?;
        }
        Step::End(ending) => end(state, id, handle, ending).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn live(kind: Kind, state: SessionState) -> Live {
        let now = OffsetDateTime::now_utc();
        Live {
            id: Uuid::nil(),
            kind,
            image: "Xfce desktop".into(),
            state,
            runtime_handle: Some(serde_json::json!({})),
            progress: Some("pulling".into()),
            created_at: now - time::Duration::seconds(10),
            start_began_at: None,
            expires_at: now + time::Duration::hours(1),
            last_activity_at: now,
            warned_at: None,
            idle_minutes: None,
            extension_minutes: None,
            extended_minutes: 0,
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(60);

    fn pending(message: &str) -> Observed {
        Observed::Pending { message: message.into() }
    }

    #[test]
    fn a_starting_session_reports_new_progress_once_and_runs_when_it_answers() {
        let now = OffsetDateTime::now_utc();
        let s = live(Kind::Notebook, SessionState::Starting);
        assert_eq!(decide(&s, pending("pulling"), now, TIMEOUT), Step::Wait);
        assert_eq!(decide(&s, pending("listening"), now, TIMEOUT), Step::Progress("listening".into()));
        let running = Observed::Running { endpoint: "unix:/x".into() };
        assert_eq!(decide(&s, running.clone(), now, TIMEOUT), Step::Run { endpoint: "unix:/x".into() });
        // Running already: seeing it run again changes nothing.
        assert_eq!(decide(&live(Kind::Notebook, SessionState::Running), running, now, TIMEOUT), Step::Wait);
    }

    #[test]
    fn a_start_past_the_timeout_fails_but_a_running_session_is_never_timed_out() {
        let late = OffsetDateTime::now_utc() + TIMEOUT;
        let step = decide(&live(Kind::Desktop, SessionState::Starting), pending("waiting"), late, TIMEOUT);
        assert_eq!(step, Step::TimedOut { reason: "did not become ready within 60 s (waiting)".into() });
        // The timeout counts from the start, not from the request: a wait in the start
        // queue is not the session's.
        let queued = Live { start_began_at: Some(late - TIMEOUT / 2), ..live(Kind::Desktop, SessionState::Starting) };
        assert_eq!(decide(&queued, pending("pulling"), late, TIMEOUT), Step::Wait);
        assert_eq!(decide(&live(Kind::Desktop, SessionState::Running), pending("x"), late, TIMEOUT), Step::Wait);
    }

    #[test]
    fn a_job_exiting_0_is_stopped_and_any_other_exit_fails_naming_what_exited() {
        let now = OffsetDateTime::now_utc();
        let job = live(Kind::Job, SessionState::Running);
        let exited = |code| Observed::Exited { exit_code: code, message: format!("exited with {code:?}") };
        let Step::End(finished) = decide(&job, exited(Some(0)), now, TIMEOUT) else { panic!() };
        assert_eq!((finished.to, finished.exit_code), (SessionState::Stopped, Some(Some(0))));
        let Step::End(failed) = decide(&job, exited(Some(2)), now, TIMEOUT) else { panic!() };
        assert_eq!((failed.to, failed.exit_code), (SessionState::Failed, Some(Some(2))));
        assert_eq!(failed.message, "Xfce desktop exited with Some(2)");
        // A desktop or notebook is never "finished": its exit is a failure, even with 0.
        let Step::End(desktop) = decide(&live(Kind::Desktop, SessionState::Running), exited(Some(0)), now, TIMEOUT)
        else {
            panic!()
        };
        assert_eq!((desktop.to, desktop.message.as_str()), (SessionState::Failed, "Xfce desktop exited with Some(0)"));
        let Step::End(killed) = decide(&live(Kind::Notebook, SessionState::Starting), exited(None), now, TIMEOUT)
        else {
            panic!()
        };
        assert_eq!((killed.to, killed.exit_code), (SessionState::Failed, Some(None)));
    }

    #[test]
    fn a_session_that_cannot_go_on_or_is_gone_fails_with_a_reason() {
        let now = OffsetDateTime::now_utc();
        let s = live(Kind::Notebook, SessionState::Running);
        let Step::End(e) = decide(&s, Observed::Failed { reason: "no node with a free GPU".into() }, now, TIMEOUT)
        else {
            panic!()
        };
        assert_eq!(
            (e.to, e.message.as_str(), e.from),
            (SessionState::Failed, "no node with a free GPU", SessionState::UNDER_WAY)
        );
        let Step::End(gone) = decide(&s, Observed::Gone, now, TIMEOUT) else { panic!() };
        assert!(gone.message.starts_with("its processes are gone"), "{}", gone.message);
    }
}
