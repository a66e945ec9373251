//! Every session: filter by state, user, proposal, image and beamline; stop one or many;
//! extend a lifetime. Stopping only asks: the session moves to `stopping` with an event,
//! and the reconciler stops what the runtime runs and marks it `stopped`. The list and the
//! stop take a `Scope`, so a beamline's staff (`crate::beamlines`) get the same list and
//! the same stop, narrowed to the sessions on their beamline's experiments.

use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::db::sessions as db;
pub use super::db::sessions::{AdminSession, Filter};
use super::{filter, paginate, Page};
use crate::audit::Actor;
use crate::error::{AppError, Result};
use crate::sessions::lifecycle::expiry::NewEnd;
use crate::sessions::lifecycle::stop::{stop, Scope, StopResult};
use crate::sessions::lifecycle::SessionState;
use crate::state::AppState;
use crate::web::{AdminUser, Json, Path, Query};

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
    let (items, total) = list(&state.db, None, filter, per_page, offset).await?;
    Ok(Json(Page { items, total, page, per_page }))
}

/// A page of the sessions (of `beamline`, for its staff), newest first, and how many match
/// in all; 400 for an unknown state.
pub async fn list(
    db: &sqlx::PgPool,
    beamline: Option<&str>,
    f: Filter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AdminSession>, i64)> {
    let states: Option<Vec<SessionState>> = match f.state.as_deref() {
        None => None,
        Some("active") => Some(SessionState::ACTIVE.to_vec()),
        Some(s) => match SessionState::parse(s) {
            Some(state) => Some(vec![state]),
            None => return Err(AppError::invalid("state", format!("unknown state {s:?}"))),
        },
    };
    Ok(db::list(db, beamline, &f, states.as_deref(), limit, offset).await?)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopInput {
    /// The sessions to stop (at most 500).
    pub ids: Vec<Uuid>,
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
    Json(input): Json<StopInput>,
) -> Result<Json<StopResult>> {
    Ok(Json(stop(&state, &actor, Scope::All, &input.ids).await?))
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
    Ok(Json(stop(&state, &actor, Scope::All, &[id]).await?))
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
    Ok(Json(extend(&state.db, &actor, id, NewEnd::At(input.expires_at)).await?))
}

/// Moves an active session's end (`lifecycle::expiry::extend`); the session as now.
pub async fn extend(db: &sqlx::PgPool, actor: &Actor, id: Uuid, end: NewEnd) -> Result<AdminSession> {
    crate::sessions::lifecycle::expiry::extend(db, actor, id, end).await?;
    db::find(db, id).await?.ok_or(AppError::NotFound)
}
