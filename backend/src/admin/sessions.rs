//! Every session: filter by state, user, proposal, image and beamline; stop one or many;
//! extend a lifetime. Stopping only asks: the session moves to `stopping` with an event,
//! and the reconciler stops what the runtime runs and marks it `stopped`. The list and the
//! stop take a `Scope`, so a beamline's staff (`crate::beamlines`) get the same list and
//! the same stop, narrowed to the sessions on their beamline's experiments.

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{filter, paginate, Page};
use crate::audit::{self, Actor};
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::{AdminUser, Json, Path, Query};

const STATES: [&str; 6] = ["requested", "starting", "running", "stopping", "stopped", "failed"];

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct AdminSession {
    pub id: Uuid,
    /// `desktop`, `notebook` or `job`.
    pub kind: String,
    /// `requested`, `starting`, `running`, `stopping`, `stopped` or `failed`.
    pub state: String,
    pub owner: String,
    pub image: String,
    pub flavour: String,
    pub proposal: String,
    pub experiment: String,
    pub beamline: String,
    pub cpu_millis: i32,
    pub memory_mib: i32,
    pub gpus: i32,
    /// `local` or `kubernetes`.
    pub runtime: String,
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
}

const SELECT: &str = "select s.id, s.kind, s.state, u.username as owner, i.name as image, f.name as flavour,
        p.identifier as proposal, e.code as experiment, e.beamline, s.cpu_millis, s.memory_mib, s.gpus, s.runtime,
        s.failure_reason, s.created_at, s.started_at, s.stopped_at, s.last_activity_at, s.expires_at
    from sessions s join users u on u.id = s.owner_id join images i on i.id = s.image_id
         join flavours f on f.id = s.flavour_id join experiments e on e.id = s.experiment_id
         join proposals p on p.id = e.proposal_id";

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionFilter {
    /// A lifecycle state, or `active` for every state before `stopped`.
    state: Option<String>,
    /// Owner's username.
    user: Option<String>,
    /// Proposal identifier.
    proposal: Option<String>,
    /// Image name.
    image: Option<String>,
    /// The experiment's beamline.
    beamline: Option<String>,
    #[param(minimum = 1)]
    page: Option<i64>,
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<i64>,
}

/// Sessions of everyone, newest first.
#[utoipa::path(get, path = "/api/v1/admin/sessions", tag = "admin", params(SessionFilter),
    responses((status = 200, body = Page<AdminSession>), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_all_sessions(
    state: AppState,
    _admin: AdminUser,
    Query(f): Query<SessionFilter>,
) -> Result<Json<Page<AdminSession>>> {
    let (page, per_page, offset) = paginate(f.page, f.per_page)?;
    let filter = Filter {
        state: filter(&f.state).map(String::from),
        user: filter(&f.user).map(String::from),
        proposal: filter(&f.proposal).map(String::from),
        image: filter(&f.image).map(String::from),
        beamline: filter(&f.beamline).map(String::from),
    };
    let (items, total) = list(&state.db, Scope::All, filter, per_page, offset).await?;
    Ok(Json(Page { items, total, page, per_page }))
}

/// Whose sessions a caller may list and stop.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// An admin: every session.
    All,
    /// A beamline's staff: the sessions on the experiments of that beamline.
    Beamline(&'a str),
}

impl<'a> Scope<'a> {
    fn beamline(self) -> Option<&'a str> {
        match self {
            Scope::All => None,
            Scope::Beamline(b) => Some(b),
        }
    }
}

/// What the sessions list is narrowed to; `None` is no filter.
#[derive(Default)]
pub struct Filter {
    /// A state, or `active`.
    pub state: Option<String>,
    pub user: Option<String>,
    pub proposal: Option<String>,
    pub image: Option<String>,
    pub beamline: Option<String>,
}

/// A page of the sessions in `scope`, newest first, and how many match in all.
pub async fn list(
    db: &sqlx::PgPool,
    scope: Scope<'_>,
    f: Filter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AdminSession>, i64)> {
    let states: Option<Vec<&str>> = match f.state.as_deref() {
        None => None,
        Some("active") => Some(STATES[..4].to_vec()),
        Some(s) if STATES.contains(&s) => Some(vec![s]),
        Some(s) => return Err(AppError::invalid("state", format!("unknown state {s:?}"))),
    };
    let condition = "($1::text[] is null or s.state = any($1)) and ($2::text is null or u.username = $2)
        and ($3::text is null or p.identifier = $3) and ($4::text is null or i.name = $4)
        and ($5::text is null or e.beamline = $5) and ($6::text is null or e.beamline = $6)";
    let items =
        sqlx::query_as(&format!("{SELECT} where {condition} order by s.created_at desc, s.id limit $7 offset $8"))
            .bind(&states)
            .bind(&f.user)
            .bind(&f.proposal)
            .bind(&f.image)
            .bind(&f.beamline)
            .bind(scope.beamline())
            .bind(limit)
            .bind(offset)
            .fetch_all(db)
            .await?;
    let total = sqlx::query_scalar(&format!("select count(*) from ({SELECT} where {condition}) x"))
        .bind(&states)
        .bind(&f.user)
        .bind(&f.proposal)
        .bind(&f.image)
        .bind(&f.beamline)
        .bind(scope.beamline())
        .fetch_one(db)
        .await?;
    Ok((items, total))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopInput {
    /// The sessions to stop (at most 500).
    pub ids: Vec<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct StopResult {
    /// Now `stopping`: the reconciler stops them.
    pub stopping: Vec<Uuid>,
    /// Already stopping, stopped or failed: left as they were.
    pub unchanged: Vec<Uuid>,
}

/// Asks for sessions to stop, in one transaction: each active one becomes `stopping`
/// with an event and an audit entry. Unknown ids make the whole request a 404.
#[utoipa::path(post, path = "/api/v1/admin/sessions/stop", tag = "admin", request_body = StopInput,
    responses((status = 200, body = StopResult), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn stop_sessions(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Json(mut input): Json<StopInput>,
) -> Result<Json<StopResult>> {
    input.ids.sort();
    input.ids.dedup();
    if input.ids.is_empty() || input.ids.len() > 500 {
        return Err(AppError::invalid("ids", "name 1 to 500 sessions"));
    }
    let result = stop(&state.db, &actor, Scope::All, &input.ids).await?;
    if !result.stopping.is_empty() {
        state.reconcile.notify_one();
    }
    Ok(Json(result))
}

/// Asks for one session to stop.
#[utoipa::path(post, path = "/api/v1/admin/sessions/{id}/stop", tag = "admin",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = StopResult), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn stop_session_as_admin(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Json<StopResult>> {
    let result = stop(&state.db, &actor, Scope::All, &[id]).await?;
    if !result.stopping.is_empty() {
        state.reconcile.notify_one();
    }
    Ok(Json(result))
}

/// Moves the active ones of `ids` to `stopping`, each with an event and an audit entry.
/// An id that is not in `scope` (or does not exist) makes the whole request a 404 that
/// changes nothing, so a beamline's staff learn nothing of other beamlines' sessions.
pub async fn stop(db: &sqlx::PgPool, actor: &Actor, scope: Scope<'_>, ids: &[Uuid]) -> Result<StopResult> {
    let mut tx = db.begin().await?;
    // Locked in id order, as every multi-row lock should be, so two bulk stops cannot deadlock.
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "select s.id, s.state from sessions s join experiments e on e.id = s.experiment_id
         where s.id = any($1) and ($2::text is null or e.beamline = $2) order by s.id for update of s",
    )
    .bind(ids)
    .bind(scope.beamline())
    .fetch_all(&mut *tx)
    .await?;
    if rows.len() != ids.len() {
        return Err(AppError::NotFound);
    }
    let (message, by) = match scope {
        Scope::All => (format!("Stop requested by the administrator {}", actor.name), json!("admin")),
        Scope::Beamline(b) => (format!("Stop requested by {}, staff of beamline {b}", actor.name), json!("beamline")),
    };
    let mut result = StopResult { stopping: Vec::new(), unchanged: Vec::new() };
    for (id, from) in rows {
        // The sessions' own stop contract: `stopping` plus an event, the reconciler the rest.
        if !crate::sessions::db::request_stop(&mut tx, id, &message).await? {
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
    Ok(result)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendInput {
    /// The new end of the session's life (RFC 3339), in the future and at most 90 days ahead.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Sets when an active session expires.
#[utoipa::path(post, path = "/api/v1/admin/sessions/{id}/extend", tag = "admin", request_body = ExtendInput,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AdminSession), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn extend_session(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(input): Json<ExtendInput>,
) -> Result<Json<AdminSession>> {
    Ok(Json(extend(&state.db, &actor, id, input.expires_at).await?))
}

/// Sets an active session's expiry, with its audit event.
pub async fn extend(db: &sqlx::PgPool, actor: &Actor, id: Uuid, expires_at: OffsetDateTime) -> Result<AdminSession> {
    let input = ExtendInput { expires_at };
    let now = OffsetDateTime::now_utc();
    if input.expires_at <= now {
        return Err(AppError::invalid("expires_at", "must be in the future"));
    }
    if input.expires_at > now + time::Duration::days(90) {
        return Err(AppError::invalid("expires_at", "must be at most 90 days ahead"));
    }
    let mut tx = db.begin().await?;
    let (from_state, before): (String, OffsetDateTime) =
        sqlx::query_as("select state, expires_at from sessions where id = $1 for update")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(AppError::NotFound)?;
    if !STATES[..3].contains(&from_state.as_str()) {
        return Err(AppError::Conflict(format!("the session is {from_state}; only an active session can be extended")));
    }
    sqlx::query("update sessions set expires_at = $2 where id = $1")
        .bind(id)
        .bind(input.expires_at)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        actor,
        "session.extend",
        "session",
        &id.to_string(),
        json!({"from": before.format(&time::format_description::well_known::Rfc3339).ok(),
               "to": input.expires_at.format(&time::format_description::well_known::Rfc3339).ok()}),
    )
    .await?;
    let session = sqlx::query_as(&format!("{SELECT} where s.id = $1")).bind(id).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(session)
}
