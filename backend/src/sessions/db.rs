//! Queries on sessions, behind one access rule: a session is seen by its members (the
//! owner is one from the launch) and by admins; to anyone else it does not exist. A member
//! counts once they accepted: an invitee sees the invitation (`members.rs`), nothing more.

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::lifecycle::SessionState;
use crate::auth::identity::CurrentUser;
use crate::runtime::{Handle, Kind};

/// The owner's time limits (their own quota's, else their role's; null: the server's
/// default) as `q`, beside a session `s`.
macro_rules! owner_times {
    () => {
        " left join lateral (
             select coalesce(uq.idle_minutes, rq.idle_minutes) as idle_minutes,
                    coalesce(uq.extension_minutes, rq.extension_minutes) as extension_minutes
             from users u
             left join quotas rq on rq.scope = 'role' and rq.role = u.role
             left join quotas uq on uq.scope = 'user' and uq.user_id = u.id
             where u.id = s.owner_id) q on true"
    };
}

/// A session as the API shows it. Never the secret, never the runtime handle.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Session {
    pub id: Uuid,
    /// `desktop`, `notebook` or `job`.
    pub kind: String,
    pub state: SessionState,
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
    /// A job's exit code, once its processes ended by themselves (null: still running,
    /// stopped, killed by a signal, or not a job).
    pub exit_code: Option<i32>,
}

impl Session {
    /// How a person reads its state: an ended session says how it ended (`finished`: a job
    /// that exited 0; `cancelled`: stopped before its processes started; `stopped`;
    /// `failed`), a live one its state.
    pub fn label(&self) -> &'static str {
        match self.state {
            SessionState::Stopped if self.kind == "job" && self.exit_code == Some(0) => "finished",
            SessionState::Stopped if self.started_at.is_none() => "cancelled",
            state => state.as_str(),
        }
    }
}

/// `select` of a `Session` for `caller`, up to `where`: the caller is bound here, so no
/// fragment depends on a parameter's position.
fn select(caller: &CurrentUser) -> QueryBuilder<'static, Postgres> {
    let mut q = QueryBuilder::new(
        "select s.id, s.kind, s.state, s.image_id, i.name as image, s.flavour_id, f.name as flavour,
            s.experiment_id, e.code as experiment, p.identifier as proposal, u.username as owner,
            (select sm.role from session_members sm where sm.session_id = s.id and sm.accepted_at is not null
             and sm.user_id = ",
    );
    q.push_bind(caller.id);
    q.push(
        ") as role, s.cpu_millis, s.memory_mib, s.gpus, s.progress, s.failure_reason, s.created_at, s.started_at,
            s.stopped_at, s.last_activity_at, s.expires_at,
            case when s.state = any(",
    );
    q.push_bind(SessionState::STOPPABLE);
    q.push(
        ") then greatest(0, extract(epoch from s.expires_at - now()))::bigint end as seconds_left,
            (select j.exit_code from jobs j where j.session_id = s.id) as exit_code
        from sessions s
        join images i on i.id = s.image_id
        join flavours f on f.id = s.flavour_id
        join experiments e on e.id = s.experiment_id
        join proposals p on p.id = e.proposal_id
        join users u on u.id = s.owner_id
        where ",
    );
    q
}

/// The access rule on a session `s`: the caller is an accepted member of it (or, with
/// `admins_see_all`, an admin).
fn push_visible(q: &mut QueryBuilder<'static, Postgres>, caller: &CurrentUser, admins_see_all: bool) {
    if admins_see_all && caller.is_admin() {
        q.push("true");
    } else {
        q.push("exists (select 1 from session_members sm where sm.session_id = s.id and sm.accepted_at is not null and sm.user_id = ");
        q.push_bind(caller.id);
        q.push(")");
    }
}

/// Whether `user` is a member of the session, or invited to it.
pub async fn is_member_or_invited(db: impl PgExecutor<'_>, session: Uuid, user: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from session_members where session_id = $1 and user_id = $2)")
        .bind(session)
        .bind(user)
        .fetch_one(db)
        .await
}

/// Whether the session is on an experiment of `beamline`.
pub async fn is_on_beamline(db: impl PgExecutor<'_>, session: Uuid, beamline: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "select exists (select 1 from sessions s join experiments e on e.id = s.experiment_id
                        where s.id = $1 and e.beamline = $2)",
    )
    .bind(session)
    .bind(beamline)
    .fetch_one(db)
    .await
}

/// One session, if the caller may see it.
pub async fn find_visible(db: impl PgExecutor<'_>, user: &CurrentUser, id: Uuid) -> sqlx::Result<Option<Session>> {
    let mut q = select(user);
    q.push("s.id = ").push_bind(id).push(" and ");
    push_visible(&mut q, user, true);
    q.build_query_as().fetch_optional(db).await
}

/// The caller's sessions (for an admin with `all`, everyone's), newest first, at most 200.
pub async fn list(
    db: impl PgExecutor<'_>,
    user: &CurrentUser,
    all: bool,
    active_only: bool,
    kind: Option<Kind>,
) -> sqlx::Result<Vec<Session>> {
    let mut q = select(user);
    push_visible(&mut q, user, all);
    if active_only {
        q.push(" and s.state = any(").push_bind(SessionState::ACTIVE).push(")");
    }
    if let Some(kind) = kind {
        q.push(" and s.kind = ").push_bind(kind.as_str());
    }
    q.push(" order by s.created_at desc limit 200");
    q.build_query_as().fetch_all(db).await
}

/// The caller's cards on My sessions: the live ones first, then those ended within a day
/// that the caller did not hide.
pub async fn cards(db: impl PgExecutor<'_>, user: &CurrentUser) -> sqlx::Result<Vec<Session>> {
    let mut q = select(user);
    push_visible(&mut q, user, false);
    q.push(" and not exists (select 1 from session_members h where h.session_id = s.id and h.user_id = ");
    q.push_bind(user.id).push(" and h.hidden_at is not null)");
    q.push(" and (s.state = any(").push_bind(SessionState::ACTIVE);
    q.push(") or s.stopped_at > now() - interval '1 day') order by (s.state = any(");
    q.push_bind(SessionState::ACTIVE).push(")) desc, s.created_at desc limit 50");
    q.build_query_as().fetch_all(db).await
}

/// Hides an ended session from the member's My sessions; false when they are no member of
/// it or it has not ended.
pub async fn hide(db: impl PgExecutor<'_>, id: Uuid, user: Uuid) -> sqlx::Result<bool> {
    let hidden = sqlx::query(
        "update session_members m set hidden_at = now() from sessions s
         where m.session_id = $1 and m.user_id = $2 and s.id = m.session_id and s.state = any($3)",
    )
    .bind(id)
    .bind(user)
    .bind(SessionState::ENDED)
    .execute(db)
    .await?;
    Ok(hidden.rows_affected() == 1)
}

/// What the desktop relay needs to know of a session, for the caller.
#[derive(sqlx::FromRow)]
pub struct RelayTarget {
    pub state: SessionState,
    pub kind: String,
    pub endpoint: Option<String>,
    pub secret: Option<String>,
    /// The caller's role; `None` for an admin who is not a member.
    pub role: Option<String>,
    /// Who controls the desktop now.
    pub controller: Uuid,
}

/// `RelayTarget` of a session the caller may see.
pub async fn relay_target(db: impl PgExecutor<'_>, user: &CurrentUser, id: Uuid) -> sqlx::Result<Option<RelayTarget>> {
    let mut q = QueryBuilder::new(
        "select s.state, s.kind, s.endpoint, s.secret, coalesce(s.controller_id, s.owner_id) as controller,
            (select sm.role from session_members sm
             where sm.session_id = s.id and sm.accepted_at is not null and sm.user_id = ",
    );
    q.push_bind(user.id).push(") as role from sessions s where s.id = ").push_bind(id).push(" and ");
    push_visible(&mut q, user, true);
    q.build_query_as().fetch_optional(db).await
}

/// Whether the experiment belongs to the proposal.
pub async fn experiment_of_proposal(db: impl PgExecutor<'_>, experiment: Uuid, proposal: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from experiments where id = $1 and proposal_id = $2)")
        .bind(experiment)
        .bind(proposal)
        .fetch_one(db)
        .await
}

/// For an image that takes parameters (a job or a web app), `Some` of its parameter schema
/// (itself optional); `None` for another kind or no such image.
pub async fn parameter_schema(db: impl PgExecutor<'_>, image: Uuid) -> sqlx::Result<Option<Option<serde_json::Value>>> {
    sqlx::query_scalar("select parameter_schema from images where id = $1 and kind in ('job', 'webapp')")
        .bind(image)
        .fetch_optional(db)
        .await
}

/// One event of the stream (the `data` of an SSE event named `session`).
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct SessionEvent {
    /// Increasing; also the SSE `id`, so `Last-Event-ID` resumes after it.
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The session's state with this event.
    pub state: SessionState,
    pub message: String,
}

/// The session's events after the event `after`, oldest first, at most 500.
pub async fn events_after(db: impl PgExecutor<'_>, id: Uuid, after: i64) -> sqlx::Result<Vec<SessionEvent>> {
    sqlx::query_as(
        "select id, at, state, message from session_events where session_id = $1 and id > $2 order by id limit 500",
    )
    .bind(id)
    .bind(after)
    .fetch_all(db)
    .await
}

/// The session's latest `limit` events, newest first: `(at, state, message)`.
pub async fn latest_events(
    db: impl PgExecutor<'_>,
    id: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<(OffsetDateTime, SessionState, String)>> {
    sqlx::query_as("select at, state, message from session_events where session_id = $1 order by id desc limit $2")
        .bind(id)
        .bind(limit)
        .fetch_all(db)
        .await
}

// The lifecycle's queries (`super::lifecycle`): each a single statement, run in the
// caller's transaction where it is part of a change.

/// An enabled image, as a launch checks it.
#[derive(sqlx::FromRow)]
pub struct LaunchImage {
    pub name: String,
    pub kind: String,
    pub allowed_roles: Vec<String>,
    pub parameter_schema: Option<serde_json::Value>,
}

pub async fn launchable_image(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<LaunchImage>> {
    sqlx::query_as("select name, kind, allowed_roles, parameter_schema from images where id = $1 and enabled")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// An enabled flavour, as a launch checks it.
#[derive(sqlx::FromRow)]
pub struct LaunchFlavour {
    pub name: String,
    pub cpu_millis: i32,
    pub memory_mib: i32,
    pub gpus: i32,
    pub allowed_roles: Vec<String>,
}

pub async fn launchable_flavour(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<LaunchFlavour>> {
    sqlx::query_as("select name, cpu_millis, memory_mib, gpus, allowed_roles from flavours where id = $1 and enabled")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Whether the image may run on the flavour: an image that names no flavours runs on all.
pub async fn image_runs_on(conn: &mut PgConnection, image: Uuid, flavour: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "select not exists (select 1 from image_flavours where image_id = $1)
             or exists (select 1 from image_flavours where image_id = $1 and flavour_id = $2)",
    )
    .bind(image)
    .bind(flavour)
    .fetch_one(conn)
    .await
}

/// The experiment a session works on.
pub async fn experiment_of(db: impl PgExecutor<'_>, session: Uuid) -> sqlx::Result<Uuid> {
    sqlx::query_scalar("select experiment_id from sessions where id = $1").bind(session).fetch_one(db).await
}

/// The experiment's proposal identifier and beamline, for messages.
pub async fn proposal_and_beamline(db: impl PgExecutor<'_>, experiment: Uuid) -> sqlx::Result<(String, String)> {
    sqlx::query_as(
        "select p.identifier, e.beamline from experiments e join proposals p on p.id = e.proposal_id where e.id = $1",
    )
    .bind(experiment)
    .fetch_one(db)
    .await
}

/// The id of the experiment's dataset called `name`.
pub async fn dataset_of_experiment(
    conn: &mut PgConnection,
    experiment: Uuid,
    name: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("select id from datasets where experiment_id = $1 and name = $2")
        .bind(experiment)
        .bind(name)
        .fetch_optional(conn)
        .await
}

/// A session to record, in `starting`.
pub struct NewSession<'a> {
    pub owner: Uuid,
    pub experiment: Uuid,
    pub image: Uuid,
    pub flavour: Uuid,
    pub kind: &'a str,
    pub cpu_millis: i32,
    pub memory_mib: i32,
    pub gpus: i32,
    pub runtime: &'a str,
    pub secret: &'a str,
    pub lifetime_minutes: i32,
}

/// Records a session in `starting` and its owner as its first member; returns its id.
pub async fn insert(conn: &mut PgConnection, new: &NewSession<'_>) -> sqlx::Result<Uuid> {
    let id: Uuid = sqlx::query_scalar(
        "insert into sessions (owner_id, experiment_id, image_id, flavour_id, kind, state, cpu_millis, memory_mib, gpus,
                               runtime, secret, progress, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'queued', now() + make_interval(mins => $12))
         returning id",
    )
    .bind(new.owner)
    .bind(new.experiment)
    .bind(new.image)
    .bind(new.flavour)
    .bind(new.kind)
    .bind(SessionState::Starting)
    .bind(new.cpu_millis)
    .bind(new.memory_mib)
    .bind(new.gpus)
    .bind(new.runtime)
    .bind(new.secret)
    .bind(new.lifetime_minutes)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("insert into session_members (session_id, user_id, role) values ($1, $2, 'owner')")
        .bind(id)
        .bind(new.owner)
        .execute(conn)
        .await?;
    Ok(id)
}

/// Records a session's parameters (a job's, or a web app's), its input dataset, and for a
/// job where its output goes (`None` for a web app, which writes none of its own).
pub async fn insert_job(
    conn: &mut PgConnection,
    id: Uuid,
    parameters: &serde_json::Value,
    input_dataset: Option<Uuid>,
    output_location: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into jobs (session_id, parameters, input_dataset_id, output_location, log_location)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(parameters)
    .bind(input_dataset)
    .bind(output_location)
    .bind(output_location.map(|_| format!("/api/v1/jobs/{id}/logs")))
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks a session's row for a change; its state, `None` when there is no such session.
pub async fn lock_state(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<SessionState>> {
    sqlx::query_scalar("select state from sessions where id = $1 for update").bind(id).fetch_optional(conn).await
}

/// `lock_state`, with the session's secret.
pub async fn lock_state_and_secret(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<(SessionState, Option<String>)>> {
    sqlx::query_as("select state, secret from sessions where id = $1 for update").bind(id).fetch_optional(conn).await
}

/// Locks the sessions of `ids` (those on `beamline`, if given), in id order as every
/// multi-row lock should be, so two bulk stops cannot deadlock; their states.
pub async fn lock_for_stop(
    conn: &mut PgConnection,
    ids: &[Uuid],
    beamline: Option<&str>,
) -> sqlx::Result<Vec<(Uuid, SessionState)>> {
    sqlx::query_as(
        "select s.id, s.state from sessions s join experiments e on e.id = s.experiment_id
         where s.id = any($1) and ($2::text is null or e.beamline = $2) order by s.id for update of s",
    )
    .bind(ids)
    .bind(beamline)
    .fetch_all(conn)
    .await
}

/// Locks a session's row; its state and expiry.
pub async fn lock_expiry(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<(SessionState, OffsetDateTime)>> {
    sqlx::query_as("select state, expires_at from sessions where id = $1 for update")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A session's end as its members may move it, locked for the update.
#[derive(sqlx::FromRow)]
pub struct Extension {
    pub state: SessionState,
    pub expires_at: OffsetDateTime,
    /// What its members added so far.
    pub extended_minutes: i32,
    /// The most they may add in all, from the owner's quotas (null: the server's default).
    pub extension_minutes: Option<i32>,
}

macro_rules! extension {
    () => {
        concat!(
            "select s.state, s.expires_at, s.extended_minutes, q.extension_minutes from sessions s",
            owner_times!(),
            " where s.id = $1"
        )
    };
}

pub async fn extension(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Extension>> {
    sqlx::query_as(extension!()).bind(id).fetch_optional(db).await
}

pub async fn lock_extension(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Extension>> {
    sqlx::query_as(concat!(extension!(), " for update of s")).bind(id).fetch_optional(conn).await
}

/// Moves a session's end at its members' request, counting the minutes they added.
pub async fn add_time(conn: &mut PgConnection, id: Uuid, expires_at: OffsetDateTime, minutes: i32) -> sqlx::Result<()> {
    sqlx::query("update sessions set expires_at = $2, extended_minutes = extended_minutes + $3 where id = $1")
        .bind(id)
        .bind(expires_at)
        .bind(minutes)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_expiry(conn: &mut PgConnection, id: Uuid, expires_at: OffsetDateTime) -> sqlx::Result<()> {
    sqlx::query("update sessions set expires_at = $2 where id = $1").bind(id).bind(expires_at).execute(conn).await?;
    Ok(())
}

pub async fn set_exit_code(conn: &mut PgConnection, id: Uuid, exit_code: Option<i32>) -> sqlx::Result<()> {
    sqlx::query("update jobs set exit_code = $2 where session_id = $1").bind(id).bind(exit_code).execute(conn).await?;
    Ok(())
}

/// Stores what the runtime returned for a session still waiting to start; false when it
/// is no longer waiting (cancelled meanwhile) or already has a handle. Its processes
/// started: it holds resources, and is accounted (`started_at`), from now on, whether or not
/// it ever answers or passes through `running`.
pub async fn store_handle(db: impl PgExecutor<'_>, id: Uuid, handle: &Handle) -> sqlx::Result<bool> {
    let stored = sqlx::query(
        "update sessions set runtime_handle = $2, started_at = coalesce(started_at, now())
         where id = $1 and state = any($3) and runtime_handle is null",
    )
    .bind(id)
    .bind(&handle.0)
    .bind(SessionState::LAUNCHING)
    .execute(db)
    .await?;
    Ok(stored.rows_affected() == 1)
}

/// A job's parameters as submitted (`None` for other kinds).
pub async fn job_parameters(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<serde_json::Value>> {
    sqlx::query_scalar("select parameters from jobs where session_id = $1").bind(id).fetch_optional(db).await
}

/// Notes that the runtime is being asked to start the session, before it is; false when
/// the session is no longer waiting to start.
pub async fn begin_start(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    let updated = sqlx::query("update sessions set start_began_at = now() where id = $1 and state = any($2)")
        .bind(id)
        .bind(SessionState::LAUNCHING)
        .execute(db)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Whether the runtime may have been asked to start the session (a start began, or it has
/// a handle).
pub async fn start_began(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("select start_began_at is not null or runtime_handle is not null from sessions where id = $1")
        .bind(id)
        .fetch_one(conn)
        .await
}

/// Sets the progress message of a session still starting; false when it no longer is.
pub async fn set_progress(conn: &mut PgConnection, id: Uuid, message: &str) -> sqlx::Result<bool> {
    starting_progress(conn, id, message, false).await
}

/// Sets the progress of a session still in a batch system's queue, and moves the start of
/// its start to now: the startup timeout counts from when it leaves the queue. False when it
/// is no longer starting.
pub async fn set_queued(conn: &mut PgConnection, id: Uuid, message: &str) -> sqlx::Result<bool> {
    starting_progress(conn, id, message, true).await
}

async fn starting_progress(conn: &mut PgConnection, id: Uuid, message: &str, queued: bool) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "update sessions set progress = $2, start_began_at = case when $4 then now() else start_began_at end
         where id = $1 and state = $3",
    )
    .bind(id)
    .bind(message)
    .bind(SessionState::Starting)
    .bind(queued)
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Sets how far a running job is (`120/2048 rows`); false when it no longer runs.
pub async fn set_job_progress(conn: &mut PgConnection, id: Uuid, text: &str) -> sqlx::Result<bool> {
    let updated = sqlx::query("update sessions set progress = $2 where id = $1 and state = $3 and kind = 'job'")
        .bind(id)
        .bind(text)
        .bind(SessionState::Running)
        .execute(conn)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Sets where a session still starting answers; false when it no longer is starting. Its
/// lifetime counts from its start: the time it waited in a queue (daas's start queue, a
/// batch system's) is added to its end.
pub async fn set_endpoint(conn: &mut PgConnection, id: Uuid, endpoint: &str) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "update sessions set endpoint = nullif($2, ''), progress = null,
                    expires_at = expires_at + (coalesce(start_began_at, created_at) - created_at)
             where id = $1 and state = $3",
    )
    .bind(id)
    .bind(endpoint)
    .bind(SessionState::Starting)
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Notes that a running session was warned of its end; false when it no longer runs.
pub async fn mark_warned(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<bool> {
    let updated = sqlx::query("update sessions set warned_at = now() where id = $1 and state = $2")
        .bind(id)
        .bind(SessionState::Running)
        .execute(conn)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// A live session as the lifecycle and the reconciler read it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Live {
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub kind: Kind,
    /// The image's name, which messages about the session's server use.
    pub image: String,
    pub state: SessionState,
    pub runtime_handle: Option<serde_json::Value>,
    pub progress: Option<String>,
    pub created_at: OffsetDateTime,
    /// When the runtime was asked to start it (after the start queue).
    pub start_began_at: Option<OffsetDateTime>,
    pub expires_at: OffsetDateTime,
    pub last_activity_at: OffsetDateTime,
    pub warned_at: Option<OffsetDateTime>,
    /// The owner's idle limit from their quotas, if any.
    pub idle_minutes: Option<i32>,
    /// The most its members may add to its lifetime in all, from the owner's quotas, if any.
    pub extension_minutes: Option<i32>,
    /// What its members added so far.
    pub extended_minutes: i32,
}

impl Live {
    pub fn handle(&self) -> Option<Handle> {
        self.runtime_handle.clone().map(Handle)
    }
}

const LIVE: &str = concat!(
    "select s.id, s.kind, (select name from images where id = s.image_id) as image, s.state,
        s.runtime_handle, s.progress, s.created_at, s.start_began_at, s.expires_at, s.last_activity_at, s.warned_at,
        q.idle_minutes, q.extension_minutes, s.extended_minutes
    from sessions s",
    owner_times!()
);

/// One session as the lifecycle reads it, whatever its state.
pub async fn live(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Live>> {
    let mut q = QueryBuilder::new(LIVE);
    q.push(" where s.id = ").push_bind(id);
    q.build_query_as().fetch_optional(db).await
}

/// Every session of `runtime` that holds resources.
pub async fn all_live(db: impl PgExecutor<'_>, runtime: &str) -> sqlx::Result<Vec<Live>> {
    let mut q = QueryBuilder::new(LIVE);
    q.push(" where s.state = any(").push_bind(SessionState::ACTIVE).push(") and s.runtime = ").push_bind(runtime);
    q.build_query_as().fetch_all(db).await
}

/// What a runtime needs to start a session, as stored.
#[derive(sqlx::FromRow)]
pub struct SpecRow {
    pub kind: String,
    pub state: SessionState,
    pub secret: Option<String>,
    pub cpu_millis: i32,
    pub memory_mib: i32,
    pub gpus: i32,
    pub owner: String,
    pub image: String,
    pub reference: String,
    pub local_command: Option<serde_json::Value>,
    pub gpu_type: Option<String>,
    pub disk_gib: i32,
    pub node_selector: serde_json::Value,
    pub tolerations: serde_json::Value,
    pub slurm_partition: Option<String>,
    pub slurm_account: Option<String>,
    pub slurm_qos: Option<String>,
    pub slurm_constraint: Option<String>,
    pub proposal: String,
    pub experiment: String,
    pub beamline: String,
    pub experiment_id: Uuid,
    pub parameters: Option<serde_json::Value>,
}

pub async fn spec(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<SpecRow>> {
    sqlx::query_as(
        "select s.kind, s.state, s.secret, s.cpu_millis, s.memory_mib, s.gpus, u.username as owner, i.name as image,
                i.reference, i.local_command, f.gpu_type, f.disk_gib, f.node_selector, f.tolerations,
                f.slurm_partition, f.slurm_account, f.slurm_qos, f.slurm_constraint,
                p.identifier as proposal, e.code as experiment, e.beamline, s.experiment_id, j.parameters
         from sessions s join users u on u.id = s.owner_id join images i on i.id = s.image_id
         join flavours f on f.id = s.flavour_id join experiments e on e.id = s.experiment_id
         join proposals p on p.id = e.proposal_id left join jobs j on j.session_id = s.id
         where s.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The experiment's datasets, `(name, location)` by name.
pub async fn datasets_of_experiment(db: impl PgExecutor<'_>, experiment: Uuid) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as("select name, location from datasets where experiment_id = $1 order by name")
        .bind(experiment)
        .fetch_all(db)
        .await
}

/// The host uid of the session's owner, allocated at their first launch as `first` plus
/// the next number of a sequence, in one statement (so concurrent launches of one user get
/// the same uid, of two users two uids). May lie past the configured range: the caller checks.
pub async fn owner_host_uid(db: impl PgExecutor<'_>, session: Uuid, first: u32) -> sqlx::Result<i32> {
    sqlx::query_scalar(
        "with owner as (select owner_id from sessions where id = $1)
         update users set host_uid = coalesce(host_uid, $2 + nextval('users_host_uid_seq')::int)
         where id = (select owner_id from owner) returning host_uid",
    )
    .bind(session)
    .bind(i64::from(first))
    .fetch_one(db)
    .await
}

// The queries of members, invitations and desktop control (`super::members`); those that
// change a row run in the caller's transaction, after it locked the session.

/// A member of a session, or someone invited to it.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Member {
    pub username: String,
    pub display_name: String,
    /// `owner`, `user`, `guest` or `support`.
    pub role: String,
    /// `invited` (until they accept) or `accepted`.
    pub status: String,
}

/// The session's members and those invited, the owner first, then by username.
pub async fn members(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Vec<Member>> {
    sqlx::query_as(
        "select u.username, u.display_name, m.role,
                case when m.accepted_at is null then 'invited' else 'accepted' end as status
         from session_members m join users u on u.id = m.user_id
         where m.session_id = $1 order by m.role = 'owner' desc, u.username",
    )
    .bind(id)
    .fetch_all(db)
    .await
}

/// Locks a session's row for a change of its members; its owner and state.
pub async fn lock_owner_and_state(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<(Uuid, SessionState)> {
    sqlx::query_as("select owner_id, state from sessions where id = $1 for update").bind(id).fetch_one(conn).await
}

/// Invites `user` with `role`, or gives one invited or a member already that role (they
/// keep whether they accepted); whether they accepted.
pub async fn invite_member(conn: &mut PgConnection, id: Uuid, user: Uuid, role: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "insert into session_members (session_id, user_id, role, accepted_at) values ($1, $2, $3, null)
         on conflict (session_id, user_id) do update set role = excluded.role
         returning accepted_at is not null",
    )
    .bind(id)
    .bind(user)
    .bind(role)
    .fetch_one(conn)
    .await
}

/// Removes the member (or invitee) called `username`, unless it is `owner`: their id and
/// whether they had accepted (been inside), `None` when there is no such member.
pub async fn delete_member(
    conn: &mut PgConnection,
    id: Uuid,
    username: &str,
    owner: Uuid,
) -> sqlx::Result<Option<(Uuid, bool)>> {
    sqlx::query_as(
        "delete from session_members m using users u
         where m.session_id = $1 and m.user_id = u.id and u.username = $2 and m.user_id <> $3
         returning m.user_id, m.accepted_at is not null",
    )
    .bind(id)
    .bind(username)
    .bind(owner)
    .fetch_optional(conn)
    .await
}

/// Gives control of the desktop back to the owner if `member` holds it (a member who
/// leaves, or who is given a role that may not control).
pub async fn release_control(conn: &mut PgConnection, id: Uuid, member: Uuid) -> sqlx::Result<()> {
    sqlx::query("update sessions set controller_id = null where id = $1 and controller_id = $2")
        .bind(id)
        .bind(member)
        .execute(conn)
        .await?;
    Ok(())
}

/// Who controls the desktop now: the owner unless it handed control to a `user` member.
pub async fn controller(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<(Uuid, String)>> {
    sqlx::query_as(
        "select u.id, u.username from sessions s join users u on u.id = coalesce(s.controller_id, s.owner_id)
         where s.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The usernames of those who may be handed control of the desktop: the owner first, then
/// the `user` members who accepted.
pub async fn control_candidates(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "select u.username from session_members m join users u on u.id = m.user_id
         where m.session_id = $1 and m.role in ('owner', 'user') and m.accepted_at is not null
         order by m.role = 'owner' desc, u.username",
    )
    .bind(id)
    .fetch_all(db)
    .await
}

/// The id and role of the member called `username` who accepted; `None` for anyone else.
pub async fn accepted_member(
    conn: &mut PgConnection,
    id: Uuid,
    username: &str,
) -> sqlx::Result<Option<(Uuid, String)>> {
    sqlx::query_as(
        "select m.user_id, m.role from session_members m join users u on u.id = m.user_id
         where m.session_id = $1 and u.username = $2 and m.accepted_at is not null",
    )
    .bind(id)
    .bind(username)
    .fetch_optional(conn)
    .await
}

/// Sets who controls the desktop: a member, or `None` for the owner.
pub async fn set_controller(conn: &mut PgConnection, id: Uuid, controller: Option<Uuid>) -> sqlx::Result<()> {
    sqlx::query("update sessions set controller_id = $2 where id = $1").bind(id).bind(controller).execute(conn).await?;
    Ok(())
}

impl Invitation {
    /// The role offered, as people read it.
    pub fn role_words(&self) -> &str {
        super::sharing::role_words(&self.role)
    }
}

/// An invitation to someone else's session, waiting for the invitee's answer.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Invitation {
    /// The session's id (accept or decline it under `/api/v1/invitations/{session}`).
    pub session: Uuid,
    /// `desktop`, `notebook` or `job`.
    pub kind: String,
    /// The image's name.
    pub image: String,
    /// The proposal's user office identifier, e.g. `20180101`.
    pub proposal: String,
    /// The experiment's code, e.g. `S0011`.
    pub experiment: String,
    /// The session owner's username.
    pub owner: String,
    /// The session owner's name.
    pub owner_name: String,
    /// The role offered: `user`, `guest` or `support`.
    pub role: String,
    #[serde(with = "time::serde::rfc3339")]
    pub invited_at: OffsetDateTime,
}

/// The invitations of `user` to sessions that have not ended, newest first.
pub async fn invitations(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<Invitation>> {
    sqlx::query_as(
        "select s.id as session, s.kind, i.name as image, p.identifier as proposal, e.code as experiment,
                u.username as owner, u.display_name as owner_name, m.role, m.added_at as invited_at
         from session_members m
         join sessions s on s.id = m.session_id
         join images i on i.id = s.image_id
         join experiments e on e.id = s.experiment_id
         join proposals p on p.id = e.proposal_id
         join users u on u.id = s.owner_id
         where m.user_id = $1 and m.accepted_at is null and s.state = any($2)
         order by m.added_at desc",
    )
    .bind(user)
    .bind(SessionState::STOPPABLE)
    .fetch_all(db)
    .await
}

/// Locks `user`'s row in the session (lock the session first); `(accepted, role)`, `None`
/// when they were never invited (nor are a member).
pub async fn lock_membership(conn: &mut PgConnection, id: Uuid, user: Uuid) -> sqlx::Result<Option<(bool, String)>> {
    sqlx::query_as(
        "select accepted_at is not null, role from session_members where session_id = $1 and user_id = $2 for update",
    )
    .bind(id)
    .bind(user)
    .fetch_optional(conn)
    .await
}

/// Notes that `user` accepted their invitation to the session.
pub async fn mark_accepted(conn: &mut PgConnection, id: Uuid, user: Uuid) -> sqlx::Result<()> {
    sqlx::query("update session_members set accepted_at = now() where session_id = $1 and user_id = $2")
        .bind(id)
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes `user`'s row in the session: the caller locked it and checked it is an
/// invitation not yet accepted.
pub async fn delete_invitation(conn: &mut PgConnection, id: Uuid, user: Uuid) -> sqlx::Result<()> {
    sqlx::query("delete from session_members where session_id = $1 and user_id = $2")
        .bind(id)
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// Who asks for control of the desktop and waits for an answer: `(id, username)`.
pub async fn control_request(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<(Uuid, String)>> {
    sqlx::query_as(
        "select u.id, u.username from sessions s join users u on u.id = s.control_requested_by where s.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Records `user`'s request for control (replacing any other).
pub async fn set_control_request(conn: &mut PgConnection, id: Uuid, user: Uuid) -> sqlx::Result<()> {
    sqlx::query("update sessions set control_requested_by = $2, control_requested_at = now() where id = $1")
        .bind(id)
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// Settles the request for control: any request, or only `of` that member's (one who
/// leaves, or may no longer control).
pub async fn clear_control_request(conn: &mut PgConnection, id: Uuid, of: Option<Uuid>) -> sqlx::Result<()> {
    sqlx::query(
        "update sessions set control_requested_by = null, control_requested_at = null
         where id = $1 and ($2::uuid is null or control_requested_by = $2)",
    )
    .bind(id)
    .bind(of)
    .execute(conn)
    .await?;
    Ok(())
}

/// The enabled users with this e-mail address (case-insensitive).
pub async fn enabled_by_email(conn: &mut PgConnection, email: &str) -> sqlx::Result<Vec<CurrentUser>> {
    sqlx::query_as("select id, username, display_name, role from users where lower(email) = lower($1) and enabled")
        .bind(email)
        .fetch_all(conn)
        .await
}

/// The enabled users with this name (case-insensitive, spaces around it ignored).
pub async fn enabled_by_name(conn: &mut PgConnection, name: &str) -> sqlx::Result<Vec<CurrentUser>> {
    sqlx::query_as(
        "select id, username, display_name, role from users where lower(display_name) = lower(btrim($1)) and enabled",
    )
    .bind(name)
    .fetch_all(conn)
    .await
}

/// A session's kind, runtime and handle, when it has a secret its runtime could replace
/// (a desktop or notebook that was started).
pub async fn rotatable(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<(String, String, serde_json::Value)>> {
    sqlx::query_as(
        "select kind, runtime, runtime_handle from sessions
         where id = $1 and kind in ('desktop', 'notebook') and runtime_handle is not null and secret is not null",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Records the session's new secret.
pub async fn set_secret(conn: &mut PgConnection, id: Uuid, secret: &str) -> sqlx::Result<()> {
    sqlx::query("update sessions set secret = $2 where id = $1").bind(id).bind(secret).execute(conn).await?;
    Ok(())
}

/// Someone the share dialog offers: a member of the session's proposal, or a scientist on
/// the staff of its beamline (or of the experiment's), who is not in the session yet.
#[derive(Debug, sqlx::FromRow)]
pub struct ShareCandidate {
    pub username: String,
    pub display_name: String,
    /// `proposal member` or `beamline staff`.
    pub relation: String,
}

/// Who may be invited to the session, by name.
pub async fn share_candidates(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Vec<ShareCandidate>> {
    sqlx::query_as(
        "with s as (select s.id, e.proposal_id, e.beamline, p.beamline as proposal_beamline
                    from sessions s join experiments e on e.id = s.experiment_id
                    join proposals p on p.id = e.proposal_id where s.id = $1),
              found as (
                select pm.user_id, 'proposal member' as relation, 0 as rank
                from s join proposal_members pm on pm.proposal_id = s.proposal_id
                union all
                select b.user_id, 'beamline staff', 1
                from s join beamline_staff b on b.beamline in (s.beamline, s.proposal_beamline)
                join users staff on staff.id = b.user_id and staff.role = 'scientist')
         select distinct on (u.display_name, u.username) u.username, u.display_name, f.relation
         from found f join users u on u.id = f.user_id and u.enabled
         where not exists (select 1 from session_members m where m.session_id = $1 and m.user_id = u.id)
         order by u.display_name, u.username, f.rank",
    )
    .bind(id)
    .fetch_all(db)
    .await
}
