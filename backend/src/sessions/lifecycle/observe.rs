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
    /// Still in a batch system's queue, or loading and telling how far it is: the startup
    /// timeout counts from now (`message`, an event when `new`).
    Queued { message: String, new: bool },
    /// A running job printed how far it is (`done/total unit`); `event`: a tenth more is
    /// done (or all), worth an event in its history.
    JobProgress { text: String, event: bool },
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
        Observed::Queued { message } | Observed::Loading { message } if starting => {
            let new = live.progress.as_deref() != Some(message.as_str());
            Step::Queued { message, new }
        }
        Observed::Queued { .. } | Observed::Loading { .. } => Step::Wait,
        Observed::Expired { message } => Step::End(Ending {
            from: SessionState::UNDER_WAY,
            to: SessionState::Stopped,
            message: format!("Stopped: {message}"),
            exit_code: None,
        }),
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
            message: match (live.kind, said_error(&message)) {
                // A job that says why it failed (`error: ...`, its last such line): that is
                // the reason a person reads; the rest of its output is in its log.
                (Kind::Job, Some(error)) => {
                    format!(
                        "{} failed: {error} (exit code {})",
                        live.image,
                        exit_code.map_or("?".into(), |c| c.to_string())
                    )
                }
                _ => format!("{} {message}", live.image),
            },
            exit_code: Some(exit_code),
        }),
        Observed::Failed { reason } => Step::End(failed(reason)),
        Observed::Gone => {
            Step::End(failed("its processes are gone (stopped outside daas, or the machine restarted)".into()))
        }
    }
}

/// The last `error: ...` line a program printed, without its prefix.
fn said_error(output: &str) -> Option<&str> {
    output.lines().rev().find_map(|l| l.trim().strip_prefix("error: ")).map(str::trim).filter(|e| !e.is_empty())
}

/// How far a job is, from the last `progress <done>/<total> <unit>` line of its output (the
/// convention of daas's jobs, e.g. `progress 120/2048 rows`): `(done, total, unit)`.
pub fn job_progress(output: &str) -> Option<(u64, u64, &str)> {
    output.lines().rev().find_map(|line| {
        let (counts, unit) = line.trim().strip_prefix("progress ")?.split_once(' ')?;
        let (done, total) = counts.split_once('/')?;
        let (done, total) = (done.parse().ok()?, total.parse().ok()?);
        (done <= total && total > 0 && !unit.trim().is_empty()).then_some((done, total, unit.trim()))
    })
}

/// The step for a running job's output: its progress when it moved since `live.progress`.
pub fn job_step(live: &Live, output: &str) -> Step {
    let Some((done, total, unit)) = job_progress(output) else { return Step::Wait };
    let text = format!("{done}/{total} {unit}");
    if live.progress.as_deref() == Some(text.as_str()) {
        return Step::Wait;
    }
    let tenth = |done: u64, total: u64| done * 10 / total;
    let before = live.progress.as_deref().map(|p| format!("progress {p}"));
    let event = match before.as_deref().and_then(job_progress) {
        Some((d, t, u)) if t == total && u == unit => tenth(d, t) != tenth(done, total),
        _ => true,
    };
    Step::JobProgress { text, event }
}

fn failed(message: String) -> Ending {
    Ending { from: SessionState::UNDER_WAY, to: SessionState::Failed, message, exit_code: None }
}

/// Observes a session that has a handle, decides its step and carries it out.
pub async fn observe(state: &AppState, live: &Live, handle: &Handle) -> anyhow::Result<Seen> {
    let observed = state.runtime.observe(live.id, handle).await?;
    let mut step = decide(live, observed, OffsetDateTime::now_utc(), state.config.sessions.startup_timeout);
    if step == Step::Wait && live.kind == Kind::Job && live.state == SessionState::Running {
        let output = state.runtime.logs(live.id, handle, 20).await.unwrap_or_default();
        step = job_step(live, &output);
    }
    let seen = if matches!(step, Step::Run { .. }) { Seen::Answers } else { Seen::Other };
    apply(state, live, handle, step).await?;
    Ok(seen)
}

/// What an observation found, for a launch watching its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The session answers now (it runs, or ran already).
    Answers,
    Other,
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
        Step::Queued { message, new } => {
            let mut tx = state.db.begin().await?;
            if db::set_queued(&mut tx, id, &message).await? && new {
                events::add(&mut tx, id, SessionState::Starting, &message).await?;
            }
            tx.commit().await?;
        }
        Step::JobProgress { text, event } => {
            let mut tx = state.db.begin().await?;
            if db::set_job_progress(&mut tx, id, &text).await? && event {
                events::add(&mut tx, id, SessionState::Running, &format!("progress {text}")).await?;
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
    fn a_session_in_a_batch_queue_waits_there_with_its_reason_and_is_never_timed_out() {
        let late = OffsetDateTime::now_utc() + TIMEOUT * 10;
        let s = live(Kind::Notebook, SessionState::Starting);
        let queued = |m: &str| Observed::Queued { message: m.into() };
        assert_eq!(
            decide(&s, queued("waiting for resources"), late, TIMEOUT),
            Step::Queued { message: "waiting for resources".into(), new: true }
        );
        let s = Live { progress: Some("waiting for resources".into()), ..s };
        assert_eq!(
            decide(&s, queued("waiting for resources"), late, TIMEOUT),
            Step::Queued { message: "waiting for resources".into(), new: false }
        );
        // Ended by the batch system at its time limit: a lifetime's end, not a failure.
        let running = live(Kind::Desktop, SessionState::Running);
        let expired = Observed::Expired { message: "reached its time limit in Slurm".into() };
        let Step::End(e) = decide(&running, expired, late, TIMEOUT) else { panic!() };
        assert_eq!((e.to, e.message.as_str()), (SessionState::Stopped, "Stopped: reached its time limit in Slurm"));
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

    #[test]
    fn a_running_jobs_progress_lines_move_its_bar_and_each_tenth_is_an_event() {
        let mut job = Live {
            image: "Tomography reconstruction".into(),
            progress: None,
            ..live(Kind::Job, SessionState::Running)
        };
        assert_eq!(job_progress("reading\nprogress 0/2048 rows\nprogress 120/2048 rows\n"), Some((120, 2048, "rows")));
        assert_eq!(job_progress("progress 3/2 rows\nprogress x/2 rows\nno progress here"), None);
        let step = |job: &Live, output: &str| job_step(job, output);
        assert_eq!(
            step(&job, "progress 120/2048 rows"),
            Step::JobProgress { text: "120/2048 rows".into(), event: true }
        );
        job.progress = Some("120/2048 rows".into());
        assert_eq!(step(&job, "progress 120/2048 rows"), Step::Wait, "no change");
        assert_eq!(
            step(&job, "progress 150/2048 rows"),
            Step::JobProgress { text: "150/2048 rows".into(), event: false }
        );
        assert_eq!(
            step(&job, "progress 210/2048 rows"),
            Step::JobProgress { text: "210/2048 rows".into(), event: true }
        );
        assert_eq!(step(&job, "progress 3/11 centres"), Step::JobProgress { text: "3/11 centres".into(), event: true });
        assert_eq!(step(&job, "just a log line"), Step::Wait);
    }

    #[test]
    fn a_job_that_says_why_it_failed_fails_with_that_reason() {
        let job = Live { image: "Tomography reconstruction".into(), ..live(Kind::Job, SessionState::Running) };
        let output =
            "exited with code 2; its last output:\n21:04:05 reading\nerror: /data/x/scan.h5: missing /exchange/theta";
        let Step::End(ending) = decide(&job, exited(Some(2), output), OffsetDateTime::now_utc(), TIMEOUT) else {
            panic!()
        };
        assert_eq!(
            ending.message,
            "Tomography reconstruction failed: /data/x/scan.h5: missing /exchange/theta (exit code 2)"
        );
        // Without such a line, the output is quoted as before.
        let Step::End(ending) = decide(&job, exited(Some(1), "exited with code 1"), OffsetDateTime::now_utc(), TIMEOUT)
        else {
            panic!()
        };
        assert_eq!(ending.message, "Tomography reconstruction exited with code 1");
    }

    fn exited(exit_code: Option<i32>, message: &str) -> Observed {
        Observed::Exited { exit_code, message: message.into() }
    }
}
