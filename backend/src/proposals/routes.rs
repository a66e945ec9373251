//! `GET /api/v1/proposals` and `GET /api/v1/proposals/{id}`.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::db::{self, Experiment, Member, ProposalSummary};
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::{Json, Path, Query};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_proposals))
        .routes(routes!(get_proposal))
        .routes(routes!(star_proposal, unstar_proposal))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Matches the identifier, the title or the beamline (case-insensitive, anywhere).
    q: Option<String>,
    /// Only proposals of this beamline.
    beamline: Option<String>,
    /// Page number, from 1.
    #[param(minimum = 1)]
    page: Option<i64>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many match in all.
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

/// Turns `page`/`per_page` into a limit and offset, refusing what makes no sense.
pub fn paginate(page: Option<i64>, per_page: Option<i64>) -> Result<(i64, i64, i64)> {
    let page = page.unwrap_or(1);
    let per_page = per_page.unwrap_or(20);
    if page < 1 {
        return Err(AppError::invalid("page", "must be 1 or more"));
    }
    if !(1..=100).contains(&per_page) {
        return Err(AppError::invalid("per_page", "must be between 1 and 100"));
    }
    let offset = (page - 1).checked_mul(per_page).ok_or_else(|| AppError::invalid("page", "is too large"))?;
    Ok((page, per_page, offset))
}

/// The proposals the caller may see: favourites first.
#[utoipa::path(get, path = "/api/v1/proposals", tag = "proposals", params(ListParams),
    responses((status = 200, body = Page<ProposalSummary>), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
pub async fn list_proposals(
    state: AppState,
    user: CurrentUser,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<ProposalSummary>>> {
    let (page, per_page, offset) = paginate(params.page, params.per_page)?;
    let search = params.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let beamline = params.beamline.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let filter = db::ListFilter { search, beamline, limit: per_page, offset };
    let (items, total) = db::list(&state.db, &user, &filter).await?;
    Ok(Json(Page { items, total, page, per_page }))
}

#[derive(Serialize, ToSchema)]
pub struct ProposalDetail {
    pub identifier: String,
    pub title: String,
    #[serde(rename = "abstract")]
    pub abstract_: String,
    pub beamline: String,
    /// The caller's role in the proposal, if they are in it.
    pub role: Option<String>,
    pub favourite: bool,
    pub members: Vec<Member>,
    pub experiments: Vec<Experiment>,
}

/// One proposal with its experiments and their datasets; 404 when it is not the caller's.
#[utoipa::path(get, path = "/api/v1/proposals/{id}", tag = "proposals",
    params(("id" = String, Path, description = "The user office identifier, e.g. 20180101")),
    responses((status = 200, body = ProposalDetail), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
pub async fn get_proposal(state: AppState, user: CurrentUser, Path(id): Path<String>) -> Result<Json<ProposalDetail>> {
    let proposal = db::find_visible(&state.db, &user, &id).await?.ok_or(AppError::NotFound)?;
    let experiments = db::experiments(&state.db, proposal.id).await?;
    let members = db::members(&state.db, proposal.id).await?;
    Ok(Json(ProposalDetail {
        identifier: proposal.identifier,
        title: proposal.title,
        abstract_: proposal.abstract_,
        beamline: proposal.beamline,
        role: proposal.role,
        favourite: proposal.favourite,
        members,
        experiments,
    }))
}

/// Stars a proposal for the caller (idempotent).
#[utoipa::path(put, path = "/api/v1/proposals/{id}/favourite", tag = "proposals",
    params(("id" = String, Path, description = "The user office identifier")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn star_proposal(state: AppState, user: CurrentUser, Path(id): Path<String>) -> Result<StatusCode> {
    db::set_favourite(&state.db, &user, &id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unstars a proposal for the caller (idempotent).
#[utoipa::path(delete, path = "/api/v1/proposals/{id}/favourite", tag = "proposals",
    params(("id" = String, Path, description = "The user office identifier")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn unstar_proposal(state: AppState, user: CurrentUser, Path(id): Path<String>) -> Result<StatusCode> {
    db::set_favourite(&state.db, &user, &id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
