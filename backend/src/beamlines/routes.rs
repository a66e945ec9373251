//! `/api/v1/beamlines/{beamline}/sessions`: the sessions on a beamline's experiments, for
//! its staff; list with the admin list's filters, stop one or many through the same
//! `stopping` contract, each stop audited.

use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::admin::sessions::{self, AdminSession, Filter, StopInput};
use crate::admin::{filter, paginate, Page};
use crate::audit::Actor;
use crate::auth::identity::CurrentUser;
use crate::error::Result;
use crate::sessions::lifecycle::stop::{stop, Scope, StopResult};
use crate::state::AppState;
use crate::web::{Json, Path, Query};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_beamline_sessions))
        .routes(routes!(stop_beamline_sessions))
        .routes(routes!(stop_beamline_session))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BeamlineSessionFilter {
    /// A lifecycle state, or `active` for every state before `stopped`.
    state: Option<String>,
    /// Owner's username.
    user: Option<String>,
    /// Proposal identifier.
    proposal: Option<String>,
    /// Image name.
    image: Option<String>,
    #[param(minimum = 1)]
    page: Option<i64>,
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<i64>,
}

/// The sessions on the beamline's experiments, newest first (its staff and admins; 404 to
/// anyone else).
#[utoipa::path(get, path = "/api/v1/beamlines/{beamline}/sessions", tag = "beamlines",
    params(("beamline" = String, Path, description = "e.g. `BL11`"), BeamlineSessionFilter),
    responses((status = 200, body = Page<AdminSession>), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id, beamline = %beamline))]
pub async fn list_beamline_sessions(
    state: AppState,
    user: CurrentUser,
    Path(beamline): Path<String>,
    Query(f): Query<BeamlineSessionFilter>,
) -> Result<Json<Page<AdminSession>>> {
    super::check_staff(&state.db, &user, &beamline).await?;
    let (page, per_page, offset) = paginate(f.page, f.per_page)?;
    let filter = Filter {
        state: filter(&f.state).map(String::from),
        user: filter(&f.user).map(String::from),
        proposal: filter(&f.proposal).map(String::from),
        image: filter(&f.image).map(String::from),
        beamline: None,
    };
    let (items, total) = sessions::list(&state.db, Some(&beamline), filter, per_page, offset).await?;
    Ok(Json(Page { items, total, page, per_page }))
}

/// Asks for sessions on the beamline to stop, in one transaction; an id that is not a
/// session of this beamline makes the whole request a 404 that stops nothing.
#[utoipa::path(post, path = "/api/v1/beamlines/{beamline}/sessions/stop", tag = "beamlines",
    request_body = StopInput,
    params(("beamline" = String, Path, description = "e.g. `BL11`")),
    responses((status = 200, body = StopResult), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id, beamline = %beamline))]
pub async fn stop_beamline_sessions(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path(beamline): Path<String>,
    Json(input): Json<StopInput>,
) -> Result<Json<StopResult>> {
    super::check_staff(&state.db, &user, &beamline).await?;
    Ok(Json(stop(&state, &actor, Scope::Beamline(&beamline), &input.ids).await?))
}

/// Asks for one session on the beamline to stop.
#[utoipa::path(post, path = "/api/v1/beamlines/{beamline}/sessions/{id}/stop", tag = "beamlines",
    params(("beamline" = String, Path, description = "e.g. `BL11`"), ("id" = Uuid, Path)),
    responses((status = 200, body = StopResult), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id, beamline = %beamline, session.id = %id))]
pub async fn stop_beamline_session(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path((beamline, id)): Path<(String, Uuid)>,
) -> Result<Json<StopResult>> {
    super::check_staff(&state.db, &user, &beamline).await?;
    Ok(Json(stop(&state, &actor, Scope::Beamline(&beamline), &[id]).await?))
}
