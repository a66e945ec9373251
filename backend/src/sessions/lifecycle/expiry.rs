//! Expiry: a running session is stopped when its lifetime ends or, for desktops and
//! notebooks, when it has been idle for its owner's idle limit; it is warned once before
//! (an event: the pages show it, and it says how to keep the session). `expiry` is the
//! policy and does no I/O; `check` carries it out (a stop is `request_stop`, as any other).
//! An admin may move the end (`extend`); its members may add time themselves, up to the
//! owner's extension limit over the session's life (`more_time`).

use serde::Serialize;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::state::SessionState;
use super::stop::request_stop;
use crate::audit::{self, Actor};
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};
use crate::runtime::Kind;
use crate::sessions::db::Live;
use crate::sessions::{db, events};
use crate::state::{AppState, SessionPolicy};

/// What expiry asks of a running session now.
#[derive(Clone, Debug, PartialEq)]
pub enum Expiry {
    /// Nothing yet.
    Keep,
    /// Its end is within the warning time and it was not warned for this end yet.
    Warn { message: String },
    /// Past its end.
    Stop { message: String },
}

/// The expiry step for a running session at `now`.
pub fn expiry(live: &Live, now: OffsetDateTime, policy: &SessionPolicy) -> Expiry {
    let idle_limit = live
        .idle_minutes
        .map(|m| time::Duration::minutes(i64::from(m)))
        .unwrap_or_else(|| time::Duration::try_from(policy.idle_limit).unwrap_or(time::Duration::DAY));
    // Jobs have no user activity: only their lifetime bounds them.
    let idle_deadline = (live.kind != Kind::Job).then(|| live.last_activity_at + idle_limit);
    let (deadline, idle) = match idle_deadline {
        Some(idle) if idle < live.expires_at => (idle, true),
        _ => (live.expires_at, false),
    };
    if now >= deadline {
        let message = if idle {
            format!("Stopping: idle for {}", hm(idle_limit))
        } else {
            "Stopping: its lifetime has ended".into()
        };
        return Expiry::Stop { message };
    }
    let why = if idle {
        format!("idle for {}: use it (a key, the mouse, a running cell) to keep it", hm(idle_limit))
    } else {
        match extension_left(live.extension_minutes, live.extended_minutes, policy) {
            0 => "its lifetime ends; it has had all the extra time its owner's quota allows: ask an admin for more"
                .to_string(),
            left => format!(
                "its lifetime ends; to keep it, extend it on its page (up to {} more)",
                hm(time::Duration::minutes(left.into()))
            ),
        }
    };
    let warning = time::Duration::try_from(policy.warning).unwrap_or(time::Duration::ZERO);
    // A warning counts for this deadline only: activity since, or an extension, re-arms it.
    let warned = live.warned_at.is_some_and(|w| w >= live.last_activity_at && w >= deadline - warning);
    if now >= deadline - warning && !warned {
        let at = deadline.format(&Rfc3339).unwrap_or_default();
        return Expiry::Warn { message: format!("Warning: stops in {} ({at}), {why}", hm(deadline - now)) };
    }
    Expiry::Keep
}

/// Carries out `expiry` for a running session.
pub async fn check(state: &AppState, live: &Live) -> anyhow::Result<()> {
    match expiry(live, OffsetDateTime::now_utc(), &state.config.sessions) {
        Expiry::Keep => {}
        Expiry::Stop { message } => {
            let mut tx = state.db.begin().await?;
            request_stop(&mut tx, live.id, &message).await?;
            tx.commit().await?;
            state.lifecycle.wake();
        }
        Expiry::Warn { message } => {
            let mut tx = state.db.begin().await?;
            if db::mark_warned(&mut tx, live.id).await? {
                events::add(&mut tx, live.id, SessionState::Running, &message).await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Minutes its members may still add to a session, given the owner's extension limit
/// (`None`: the server's default) and what they added so far.
pub fn extension_left(limit: Option<i32>, extended: i32, policy: &SessionPolicy) -> i32 {
    let limit = limit.unwrap_or_else(|| (policy.extension_limit.as_secs() / 60).min(i32::MAX as u64) as i32);
    (limit - extended).max(0)
}

/// A session's end after a member gave it more time.
#[derive(Debug, Serialize, ToSchema)]
pub struct Extended {
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Minutes its members added over its life.
    pub extended_minutes: i32,
    /// Minutes they may still add.
    pub extension_left_minutes: i32,
}

/// Adds `minutes` to a live session's end at a member's request (its owner, a user of it,
/// or an admin), counted against the owner's extension limit over the session's life; with
/// an event the session's pages show and an audit entry. 404 when the caller cannot see
/// the session, 403 for a guest or support member, 400 for fewer than 1 minute, 409 when
/// it has ended or `minutes` is more than is left (the message says how much is).
pub async fn more_time(
    state: &AppState,
    actor: &Actor,
    user: &CurrentUser,
    id: Uuid,
    minutes: i32,
) -> Result<Extended> {
    let session = db::find_visible(&state.db, user, id).await?.ok_or(AppError::NotFound)?;
    if !user.is_admin() && !matches!(session.role.as_deref(), Some("owner" | "user")) {
        return Err(AppError::Forbidden("only the session's owner and its users may extend it".into()));
    }
    if minutes < 1 {
        return Err(AppError::invalid("minutes", "must be at least 1"));
    }
    let mut tx = state.db.begin().await?;
    let now = db::lock_extension(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    if !SessionState::STOPPABLE.contains(&now.state) {
        return Err(AppError::Conflict(format!(
            "the session is {}; only an active session can be extended",
            now.state
        )));
    }
    let left = extension_left(now.extension_minutes, now.extended_minutes, &state.config.sessions);
    if minutes > left {
        let used = hm(time::Duration::minutes(now.extended_minutes.into()));
        return Err(AppError::Conflict(match left {
            0 => format!("this session has had all the extra time its owner's quota allows ({used}): ask an admin"),
            _ => format!(
                "this session may get at most {} more ({used} added so far); an admin can extend it further",
                hm(time::Duration::minutes(left.into()))
            ),
        }));
    }
    let expires_at = now.expires_at.max(OffsetDateTime::now_utc()) + time::Duration::minutes(minutes.into());
    db::add_time(&mut tx, id, expires_at, minutes).await?;
    let until = expires_at.format(&Rfc3339).unwrap_or_default();
    let message = format!(
        "Extended by {} at {}'s request, until {until}",
        hm(time::Duration::minutes(minutes.into())),
        user.username
    );
    events::add(&mut tx, id, now.state, &message).await?;
    let details =
        json!({"from": now.expires_at.format(&Rfc3339).ok(), "to": until, "minutes": minutes, "by_member": true});
    audit::record(&mut *tx, actor, "session.extend", "session", &id.to_string(), details).await?;
    tx.commit().await?;
    let extended_minutes = now.extended_minutes + minutes;
    Ok(Extended { expires_at, extended_minutes, extension_left_minutes: left - minutes })
}

/// A session's new end.
#[derive(Clone, Copy, Debug)]
pub enum NewEnd {
    /// At this time.
    At(OffsetDateTime),
    /// This much after its current end (or after now, if that has passed).
    Later(time::Duration),
}

/// Moves the end of a live session (to the future, at most 90 days ahead), with its audit
/// event. 404 when there is no such session, 409 when it has ended or is stopping.
pub async fn extend(db: &sqlx::PgPool, actor: &Actor, id: Uuid, end: NewEnd) -> Result<()> {
    let mut tx = db.begin().await?;
    let (from, before) = db::lock_expiry(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let now = OffsetDateTime::now_utc();
    let expires_at = match end {
        NewEnd::At(at) => at,
        NewEnd::Later(by) => before.max(now) + by,
    };
    if expires_at <= now {
        return Err(AppError::invalid("expires_at", "must be in the future"));
    }
    if expires_at > now + time::Duration::days(90) {
        return Err(AppError::invalid("expires_at", "must be at most 90 days ahead"));
    }
    if !SessionState::STOPPABLE.contains(&from) {
        return Err(AppError::Conflict(format!("the session is {from}; only an active session can be extended")));
    }
    db::set_expiry(&mut tx, id, expires_at).await?;
    let details = json!({"from": before.format(&Rfc3339).ok(), "to": expires_at.format(&Rfc3339).ok()});
    audit::record(&mut *tx, actor, "session.extend", "session", &id.to_string(), details).await?;
    tx.commit().await?;
    Ok(())
}

/// "2 h", "1 h 5 min", "12 min".
pub fn hm(d: time::Duration) -> String {
    let minutes = d.whole_minutes().max(0);
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy() -> SessionPolicy {
        SessionPolicy {
            idle_limit: Duration::from_secs(2 * 3600),
            warning: Duration::from_secs(15 * 60),
            extension_limit: Duration::from_secs(4 * 3600),
            ..crate::state::Config::default().sessions
        }
    }

    fn running(kind: Kind, now: OffsetDateTime, life_left: time::Duration) -> Live {
        Live {
            id: Uuid::nil(),
            kind,
            image: "JupyterLab".into(),
            state: SessionState::Running,
            runtime_handle: None,
            progress: None,
            created_at: now - time::Duration::hours(1),
            start_began_at: None,
            expires_at: now + life_left,
            last_activity_at: now,
            warned_at: None,
            idle_minutes: None,
            extension_minutes: None,
            extended_minutes: 0,
        }
    }

    #[test]
    fn a_session_is_kept_then_warned_once_then_stopped_at_its_lifetime() {
        let now = OffsetDateTime::now_utc();
        let mut s = running(Kind::Notebook, now, time::Duration::minutes(60));
        assert_eq!(expiry(&s, now, &policy()), Expiry::Keep);
        let Expiry::Warn { message } = expiry(&s, now + time::Duration::minutes(50), &policy()) else { panic!() };
        assert!(message.starts_with("Warning: stops in 10 min ("), "{message}");
        assert!(
            message.ends_with(", its lifetime ends; to keep it, extend it on its page (up to 4 h more)"),
            "{message}"
        );
        s.warned_at = Some(now + time::Duration::minutes(50));
        assert_eq!(expiry(&s, now + time::Duration::minutes(55), &policy()), Expiry::Keep, "warned once");
        let stop = expiry(&s, now + time::Duration::minutes(60), &policy());
        assert_eq!(stop, Expiry::Stop { message: "Stopping: its lifetime has ended".into() });
    }

    #[test]
    fn idleness_stops_desktops_and_notebooks_but_never_jobs() {
        let now = OffsetDateTime::now_utc();
        let later = now + time::Duration::hours(2);
        let desktop = running(Kind::Desktop, now, time::Duration::hours(8));
        assert_eq!(expiry(&desktop, later, &policy()), Expiry::Stop { message: "Stopping: idle for 2 h".into() });
        assert_eq!(expiry(&running(Kind::Job, now, time::Duration::hours(8)), later, &policy()), Expiry::Keep);
        // The owner's quota sets their own idle limit.
        let patient = Live { idle_minutes: Some(185), ..desktop };
        let Expiry::Warn { message } = expiry(&patient, now + time::Duration::minutes(175), &policy()) else {
            panic!()
        };
        assert!(
            message.ends_with(", idle for 3 h 5 min: use it (a key, the mouse, a running cell) to keep it"),
            "{message}"
        );
    }

    #[test]
    fn activity_after_a_warning_re_arms_it() {
        let now = OffsetDateTime::now_utc();
        let mut s = running(Kind::Notebook, now, time::Duration::hours(8));
        s.warned_at = Some(now - time::Duration::minutes(1));
        s.last_activity_at = now;
        let at = now + time::Duration::minutes(110);
        assert!(matches!(expiry(&s, at, &policy()), Expiry::Warn { .. }));
    }

    #[test]
    fn item_15_the_expiry_warning_says_how_much_time_its_members_may_still_add() {
        let now = OffsetDateTime::now_utc();
        let warn = |s: &Live| match expiry(s, now + time::Duration::minutes(50), &policy()) {
            Expiry::Warn { message } => message,
            other => panic!("{other:?}"),
        };
        let s = running(Kind::Desktop, now, time::Duration::minutes(60));
        // The owner's quota sets the limit; what was added counts against it.
        let some_left = Live { extension_minutes: Some(120), extended_minutes: 30, ..s.clone() };
        assert!(warn(&some_left).ends_with("extend it on its page (up to 1 h 30 min more)"), "{}", warn(&some_left));
        let none_left = Live { extended_minutes: 240, ..s.clone() };
        assert!(
            warn(&none_left).ends_with("it has had all the extra time its owner's quota allows: ask an admin for more")
        );
        assert_eq!(extension_left(Some(0), 0, &policy()), 0, "0 is no extension at all");
        assert_eq!(extension_left(None, 60, &policy()), 180, "the server's default without a quota");
    }
}
