//! `POST /api/v1/proposals/{id}/experiments/{code}/datasets` (link),
//! `DELETE /api/v1/datasets/{id}` (unlink) and `GET /api/v1/datasets` (search).
//! Linking is for the scientists of the experiment's beamline and for admins; a caller who
//! cannot see the proposal gets 404, one who can but may not link gets 403. What is linked
//! must lie in the experiment's storage folder (`DAAS_EXPERIMENT_STORAGE`), so no one links
//! another proposal's data into theirs.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::path::{self, LocationError};
use crate::audit::{self, Actor};
use crate::auth::identity::CurrentUser;
use crate::auth::identity::Role;
use crate::error::{AppError, Result};
use crate::proposals::db::VISIBLE;
use crate::proposals::routes::{paginate, Page};
use crate::state::AppState;
use crate::web::{Json, Path, Query};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(link_dataset)).routes(routes!(search_datasets)).routes(routes!(unlink_dataset))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct DatasetRow {
    pub id: Uuid,
    pub name: String,
    /// Path below the data root.
    pub location: String,
    pub size_bytes: i64,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub proposal: String,
    pub experiment: String,
    pub beamline: String,
    /// Who linked it.
    pub created_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

const SELECT: &str = "select d.id, d.name, d.location, d.size_bytes, d.metadata, p.identifier as proposal,
        e.code as experiment, e.beamline, u.username as created_by, d.created_at
    from datasets d join experiments e on e.id = d.experiment_id join proposals p on p.id = e.proposal_id
         left join users u on u.id = d.created_by";

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

/// May the caller link data on this beamline's experiments?
async fn may_link(db: &sqlx::PgPool, user: &CurrentUser, beamline: &str) -> Result<bool> {
    Ok(match user.role {
        Role::Admin => true,
        Role::Scientist => {
            sqlx::query_scalar("select exists (select 1 from beamline_staff where user_id = $1 and beamline = $2)")
                .bind(user.id)
                .bind(beamline)
                .fetch_one(db)
                .await?
        }
        Role::User => false,
    })
}

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
    let experiment: Option<(Uuid, String)> = sqlx::query_as(&format!(
        "select e.id, e.beamline from experiments e join proposals p on p.id = e.proposal_id
         where p.identifier = $3 and e.code = $4 and {VISIBLE}"
    ))
    .bind(user.id)
    .bind(user.role.as_str())
    .bind(identifier)
    .bind(code)
    .fetch_optional(&state.db)
    .await?;
    let (experiment_id, beamline) = experiment.ok_or(AppError::NotFound)?;
    if !may_link(&state.db, user, &beamline).await? {
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
    let id: Uuid = sqlx::query_scalar(
        "insert into datasets (experiment_id, name, location, size_bytes, metadata, created_by)
         values ($1, $2, $3, $4, $5, $6) returning id",
    )
    .bind(experiment_id)
    .bind(&name)
    .bind(&resolved.relative)
    .bind(size)
    .bind(&metadata)
    .bind(user.id)
    .fetch_one(&mut *tx)
    .await
    .map_err(|err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            AppError::Conflict(format!("{} is already linked to {identifier}/{code}", resolved.relative))
        }
        _ => err.into(),
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
    let row = sqlx::query_as(&format!("{SELECT} where d.id = $1")).bind(id).fetch_one(&mut *tx).await?;
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
    let found: Option<(String, String)> = sqlx::query_as(&format!(
        "select e.beamline, d.location from datasets d join experiments e on e.id = d.experiment_id
         join proposals p on p.id = e.proposal_id where d.id = $3 and {VISIBLE} for update of d"
    ))
    .bind(user.id)
    .bind(user.role.as_str())
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let (beamline, location) = found.ok_or(AppError::NotFound)?;
    if !may_link(&state.db, &user, &beamline).await? {
        return Err(refuse(&beamline));
    }
    sqlx::query("delete from datasets where id = $1").bind(id).execute(&mut *tx).await?;
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
    let q = crate::admin::filter(&params.q).map(crate::admin::like_pattern);
    let condition = format!(
        "{VISIBLE} and ($3::text is null or p.identifier = $3) and ($4::text is null or e.code = $4)
         and ($5::text is null or e.beamline = $5) and ($6::jsonb is null or d.metadata @> $6)
         and ($7::text is null or d.name ilike $7 or d.location ilike $7)"
    );
    let items =
        sqlx::query_as(&format!("{SELECT} where {condition} order by p.identifier, e.code, d.name limit $8 offset $9"))
            .bind(user.id)
            .bind(user.role.as_str())
            .bind(crate::admin::filter(&params.proposal))
            .bind(crate::admin::filter(&params.experiment))
            .bind(crate::admin::filter(&params.beamline))
            .bind(&metadata)
            .bind(&q)
            .bind(per_page)
            .bind(offset)
            .fetch_all(&state.db)
            .await?;
    let total = sqlx::query_scalar(&format!(
        "select count(*) from datasets d join experiments e on e.id = d.experiment_id
         join proposals p on p.id = e.proposal_id where {condition}"
    ))
    .bind(user.id)
    .bind(user.role.as_str())
    .bind(crate::admin::filter(&params.proposal))
    .bind(crate::admin::filter(&params.experiment))
    .bind(crate::admin::filter(&params.beamline))
    .bind(&metadata)
    .bind(&q)
    .fetch_one(&state.db)
    .await?;
    Ok(Json(Page { items, total, page, per_page }))
}
