//! `POST /api/v1/proposals/{id}/experiments/{code}/datasets` (link),
//! `DELETE /api/v1/datasets/{id}` (unlink) and `GET /api/v1/datasets` (search).
//! Linking is for the scientists of the experiment's beamline and for admins; a caller who
//! cannot see the proposal gets 404, one who can but may not link gets 403. What is linked
//! must lie in the experiment's storage folder (`DAAS_EXPERIMENT_STORAGE`), so no one links
//! another proposal's data into theirs.

use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::db::{self, DatasetRow, NewDataset, SearchFilter};
use super::path::{self, LocationError};
use crate::audit::{self, Actor};
use crate::auth::identity::CurrentUser;
use crate::beamlines::db::is_staff;
use crate::error::{AppError, Result, ResultExt};
use crate::proposals;
use crate::proposals::routes::{paginate, Page};
use crate::state::AppState;
use crate::web::{Json, Path, Query};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(link_dataset)).routes(routes!(search_datasets)).routes(routes!(unlink_dataset))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkInput {
    /// Path below the data root, inside the experiment's storage folder, e.g.
    /// `BL11/20180101/S0011/tomo_scan_0003` with the default `{beamline}/{proposal}/{experiment}`.
    pub location: String,
    /// Default: the last part of the location.
    pub name: Option<String>,
    /// Free metadata: a JSON object (sample, energy, detector, ...).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// Most bytes of metadata one dataset carries.
const METADATA_MAX: usize = 64 * 1024;

fn refuse(beamline: &str) -> AppError {
    AppError::Forbidden(format!("only the scientists of beamline {beamline} and admins link data to its experiments"))
}

/// Links a folder (or file) under the data root to an experiment, with its size and
/// metadata.
#[utoipa::path(post, path = "/api/v1/proposals/{id}/experiments/{code}/datasets", tag = "datasets",
    request_body = LinkInput,
    params(("id" = String, Path, description = "proposal identifier"), ("code" = String, Path, description = "experiment code")),
    responses((status = 201, body = DatasetRow), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
pub async fn link_dataset(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path((identifier, code)): Path<(String, String)>,
    Json(input): Json<LinkInput>,
) -> Result<(axum::http::StatusCode, Json<DatasetRow>)> {
    Ok((axum::http::StatusCode::CREATED, Json(link(&state, &user, &actor, &identifier, &code, input).await?)))
}

/// Checks the caller's right and the location, measures it, and stores the link with its
/// audit event.
pub async fn link(
    state: &AppState,
    user: &CurrentUser,
    actor: &Actor,
    identifier: &str,
    code: &str,
    input: LinkInput,
) -> Result<DatasetRow> {
    let experiment = proposals::db::visible_experiment_by_code(&state.db, user, identifier, code)
        .await?
        .ok_or(AppError::NotFound)?;
    let beamline = experiment.beamline;
    if !is_staff(&state.db, user, &beamline).await? {
        return Err(refuse(&beamline));
    }
    let metadata = input.metadata.unwrap_or_else(|| json!({}));
    if !metadata.is_object() {
        return Err(AppError::invalid("metadata", "must be a JSON object"));
    }
    if metadata.to_string().len() > METADATA_MAX {
        return Err(AppError::invalid("metadata", format!("must be at most {METADATA_MAX} bytes")));
    }
    // The experiment's beamline: where the beamtime ran is where the facility stores it.
    let folder = state
        .config
        .experiment_storage
        .folder(&beamline, identifier, code)
        .map_err(|m| AppError::invalid("location", m))?;
    let root = state.config.data_root.clone();
    let location = input.location.clone();
    let resolved = tokio::task::spawn_blocking(move || path::resolve(&root, &folder, &location))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(|e| match e {
            LocationError::Invalid(message) => AppError::invalid("location", message),
            LocationError::Root(message) => AppError::Unavailable(format!("the data root is not reachable: {message}")),
        })?;
    let name = match input.name.as_deref().map(str::trim) {
        Some("") => return Err(AppError::invalid("name", "must not be empty")),
        Some(name) if name.chars().count() > 200 => {
            return Err(AppError::invalid("name", "must be at most 200 characters"))
        }
        Some(name) => name.to_owned(),
        None => resolved.relative.rsplit('/').next().unwrap_or(&resolved.relative).to_owned(),
    };
    let size = i64::try_from(resolved.size_bytes).unwrap_or(i64::MAX);
    let mut tx = state.db.begin().await?;
    let new = NewDataset {
        experiment_id: experiment.id,
        name: &name,
        location: &resolved.relative,
        size_bytes: size,
        metadata: &metadata,
        created_by: user.id,
    };
    let id = db::insert(&mut *tx, &new).await.on_constraint(db::LINKED_ONCE, |_| {
        AppError::Conflict(format!("{} is already linked to {identifier}/{code}", resolved.relative))
    })?;
    audit::record(
        &mut *tx,
        actor,
        "dataset.link",
        "dataset",
        &id.to_string(),
        json!({"proposal": identifier, "experiment": code, "location": resolved.relative, "size_bytes": size}),
    )
    .await?;
    let row = db::find(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

/// Removes a dataset's link (the files stay where they are).
#[utoipa::path(delete, path = "/api/v1/datasets/{id}", tag = "datasets",
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
pub async fn unlink_dataset(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::http::StatusCode> {
    let mut tx = state.db.begin().await?;
    let (beamline, location) = db::lock_visible(&mut tx, &user, id).await?.ok_or(AppError::NotFound)?;
    if !is_staff(&state.db, &user, &beamline).await? {
        return Err(refuse(&beamline));
    }
    db::delete(&mut *tx, id).await?;
    audit::record(&mut *tx, &actor, "dataset.unlink", "dataset", &id.to_string(), json!({"location": location}))
        .await?;
    tx.commit().await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Proposal identifier.
    proposal: Option<String>,
    /// Experiment code.
    experiment: Option<String>,
    beamline: Option<String>,
    /// A JSON object the metadata must contain, e.g. `{"sample": "coupon A"}` or
    /// `{"energy_kev": 30}`.
    metadata: Option<String>,
    /// Matches the name or the location (case-insensitive, anywhere).
    q: Option<String>,
    #[param(minimum = 1)]
    page: Option<i64>,
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<i64>,
}

/// Datasets of the proposals the caller may see, by proposal, experiment, beamline and
/// metadata values.
#[utoipa::path(get, path = "/api/v1/datasets", tag = "datasets", params(SearchParams),
    responses((status = 200, body = Page<DatasetRow>), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
pub async fn search_datasets(
    state: AppState,
    user: CurrentUser,
    Query(params): Query<SearchParams>,
) -> Result<Json<Page<DatasetRow>>> {
    let (page, per_page, offset) = paginate(params.page, params.per_page)?;
    let metadata: Option<Value> = crate::admin::filter(&params.metadata)
        .map(|m| match serde_json::from_str::<Value>(m) {
            Ok(v) if v.is_object() => Ok(v),
            _ => Err(AppError::invalid("metadata", "must be a JSON object, e.g. {\"sample\": \"coupon A\"}")),
        })
        .transpose()?;
    let name_like = crate::admin::filter(&params.q).map(crate::admin::like_pattern);
    let filter = SearchFilter {
        proposal: crate::admin::filter(&params.proposal),
        experiment: crate::admin::filter(&params.experiment),
        beamline: crate::admin::filter(&params.beamline),
        metadata: metadata.as_ref(),
        name_like: name_like.as_deref(),
        limit: per_page,
        offset,
    };
    let (items, total) = db::search(&state.db, &user, &filter).await?;
    Ok(Json(Page { items, total, page, per_page }))
}
