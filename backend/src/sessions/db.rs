//! Queries on sessions, behind one access rule: a session is seen by its members (the
//! owner is one from the launch) and by admins; to anyone else it does not exist. A member
//! counts once they accepted: an invitee sees the invitation (`members.rs`), nothing more.

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::identity::CurrentUser;

/// SQL condition on a session `s` for the caller `$1` (user id) with role `$2`.
pub const VISIBLE: &str = "($2 = 'admin' or exists (select 1 from session_members sm
    where sm.session_id = s.id and sm.user_id = $1 and sm.accepted_at is not null))";

/// States in which a session holds resources (and counts against quotas).
pub const ACTIVE: &str = "('requested', 'starting', 'running', 'stopping')";

/// A session as the API shows it. Never the secret, never the runtime handle.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Session {
    pub id: Uuid,
    /// `desktop`, `notebook` or `job`.
    pub kind: String,
    /// `requested`, `starting`, `running`, `stopping`, `stopped` or `failed`.
    pub state: String,
    pub image_id: Uuid,
    /// The image's name.
    pub image: String,
    pub flavour_id: Uuid,
    /// The flavour's name.
    pub flavour: String,
    pub experiment_id: Uuid,
    /// The experiment's code, e.g. `S0011`.
    pub experiment: String,
    /// The proposal's user office identifier, e.g. `20180101`.
    pub proposal: String,
    /// The owner's username.
    pub owner: String,
    /// The caller's role in the session (`owner`, `user`, `guest`, `support`), if any.
    pub role: Option<String>,
    pub cpu_millis: i32,
    pub memory_mib: i32,
    pub gpus: i32,
    /// The latest progress message while it starts.
    pub progress: Option<String>,
    /// Why it failed, for a person.
    pub failure_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub stopped_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub last_activity_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Seconds until it is stopped for its lifetime (0 once past; null when it has ended).
    pub seconds_left: Option<i64>,
}

const SELECT: &str = "select s.id, s.kind, s.state, s.image_id, i.name as image, s.flavour_id, f.name as flavour,
        s.experiment_id, e.code as experiment, p.identifier as proposal, u.username as owner,
        (select sm.role from session_members sm
         where sm.session_id = s.id and sm.user_id = $1 and sm.accepted_at is not null) as role,
        s.cpu_millis, s.memory_mib, s.gpus, s.progress, s.failure_reason, s.created_at, s.started_at,
        s.stopped_at, s.last_activity_at, s.expires_at,
        case when s.state in ('requested', 'starting', 'running')
             then greatest(0, extract(epoch from s.expires_at - now()))::bigint end as seconds_left
    from sessions s
    join images i on i.id = s.image_id
    join flavours f on f.id = s.flavour_id
    join experiments e on e.id = s.experiment_id
    join proposals p on p.id = e.proposal_id
    join users u on u.id = s.owner_id";

/// One session, if the caller may see it.
pub async fn find_visible(db: impl PgExecutor<'_>, user: &CurrentUser, id: Uuid) -> sqlx::Result<Option<Session>> {
    sqlx::query_as(&format!("{SELECT} where s.id = $3 and {VISIBLE}"))
        .bind(user.id)
        .bind(user.role.as_str())
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The caller's sessions (for an admin with `all`, everyone's), newest first.
pub async fn list(
    db: impl PgExecutor<'_>,
    user: &CurrentUser,
    all: bool,
    active_only: bool,
    kind: Option<&str>,
) -> sqlx::Result<Vec<Session>> {
    sqlx::query_as(&format!(
        "{SELECT} where (($5 and $2 = 'admin')
                 or exists (select 1 from session_members sm
                            where sm.session_id = s.id and sm.user_id = $1 and sm.accepted_at is not null))
           and (not $3 or s.state in {ACTIVE})
           and ($4::text is null or s.kind = $4)
         order by s.created_at desc limit 200"
    ))
    .bind(user.id)
    .bind(user.role.as_str())
    .bind(active_only)
    .bind(kind)
    .bind(all)
    .fetch_all(db)
    .await
}

/// Moves a session to `state` with an event saying why, in the caller's transaction.
/// Sets the timestamps the model's checks ask for; `failed` takes the reason.
pub async fn transition(conn: &mut PgConnection, id: Uuid, state: &str, message: &str) -> sqlx::Result<()> {
    sqlx::query(
        "update sessions set state = $2,
             started_at = case when $2 = 'running' then coalesce(started_at, now()) else started_at end,
             stopped_at = case when $2 in ('stopped', 'failed') then coalesce(stopped_at, now()) else stopped_at end,
             failure_reason = case when $2 = 'failed' then $3 else failure_reason end,
             progress = case when $2 in ('starting', 'running') then progress else null end
         where id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(message)
    .execute(&mut *conn)
    .await?;
    super::events::add(conn, id, state, message).await
}

/// Asks for a session to stop (the contract every part of daas uses): `stopping` plus an
/// event, in the caller's transaction; the reconciler does the rest. Returns false when
/// it had already ended or was stopping.
pub async fn request_stop(conn: &mut PgConnection, id: Uuid, message: &str) -> sqlx::Result<bool> {
    let state: Option<String> = sqlx::query_scalar("select state from sessions where id = $1 for update")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match state.as_deref() {
        Some("requested" | "starting" | "running") => {
            transition(conn, id, "stopping", message).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}
