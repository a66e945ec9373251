//! `POST /api/v1/jobs`, `GET /api/v1/jobs/{id}`, `GET /api/v1/jobs/{id}/logs`, and the
//! outputs: `GET /api/v1/jobs/{id}/outputs` and `GET /api/v1/jobs/{id}/outputs/{path}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::db;
use super::outputs::{self, Output};
use crate::audit::Actor;
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};
use crate::sessions::db::{self as sessions, Session};
use crate::sessions::lifecycle::launch::{self, LaunchRequest};
use crate::state::AppState;
use crate::web::{Json, Path, Query};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_job))
        .routes(routes!(get_job))
        .routes(routes!(job_logs))
        .routes(routes!(job_outputs))
        .routes(routes!(job_output))
}

/// A job to run: a job image, a flavour, an experiment, and parameters valid against the
/// image's `parameter_schema`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub image: Uuid,
    pub flavour: Uuid,
    pub experiment: Uuid,
    #[schema(value_type = Object)]
    #[serde(default = "empty_object")]
    pub parameters: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// A job: its session, and what only jobs have.
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    #[serde(flatten)]
    pub session: Session,
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
    /// The dataset named by the `dataset` parameter.
    pub input_dataset: Option<String>,
    /// Where the results are, in the owner's home.
    pub output_location: Option<String>,
    /// Where to read its output.
    pub logs_url: String,
}

/// The session of the job `id`; 404 when it is not a job or not visible to `user`.
async fn job_session(state: &AppState, user: &CurrentUser, id: Uuid) -> Result<Session> {
    sessions::find_visible(&state.db, user, id).await?.filter(|s| s.kind == "job").ok_or(AppError::NotFound)
}

async fn find_job(state: &AppState, user: &CurrentUser, id: Uuid) -> Result<Job> {
    let session = job_session(state, user, id).await?;
    let row = db::find(&state.db, id).await?;
    Ok(Job {
        session,
        parameters: row.parameters,
        input_dataset: row.input_dataset,
        output_location: row.output_location,
        logs_url: format!("/api/v1/jobs/{id}/logs"),
    })
}

/// Submit a job. 400 names the parameter at fault (`parameters.algorithm`); 409 when over
/// quota. Answers at once with the job in `starting`.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = JobRequest,
    responses((status = 201, body = Job), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id, session.id))]
pub async fn submit_job(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Json(request): Json<JobRequest>,
) -> Result<(StatusCode, Json<Job>)> {
    let launch = LaunchRequest {
        image: request.image,
        flavour: request.flavour,
        experiment: request.experiment,
        parameters: None,
    };
    let id = launch::launch(&state, &user, &actor, &launch, Some(&request.parameters)).await?;
    tracing::Span::current().record("session.id", tracing::field::display(id));
    Ok((StatusCode::CREATED, Json(find_job(&state, &user, id).await?)))
}

/// One job; 404 when the caller is not one of its members.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's session id")),
    responses((status = 200, body = Job), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id, session.id = %id))]
pub async fn get_job(state: AppState, user: CurrentUser, Path(id): Path<Uuid>) -> Result<Json<Job>> {
    Ok(Json(find_job(&state, &user, id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// The last this many lines (1 to 10000, default 1000).
    lines: Option<usize>,
}

/// The job's output (stdout and stderr), kept after it ends; plain text.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/logs", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's session id"), LogParams),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id, session.id = %id))]
pub async fn job_logs(
    state: AppState,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    Query(params): Query<LogParams>,
) -> Result<Response> {
    let lines = params.lines.unwrap_or(1000);
    if !(1..=10_000).contains(&lines) {
        return Err(AppError::invalid("lines", "must be between 1 and 10000"));
    }
    job_session(&state, &user, id).await?;
    let handle = db::runtime_handle(&state.db, id).await?;
    let text = state.runtime.logs(id, &handle, lines).await?;
    Ok(([("content-type", "text/plain; charset=utf-8")], text).into_response())
}

/// The job's output folder as daas reads it; 409 on a runtime whose homes daas cannot read.
fn output_folder(state: &AppState, session: &Session) -> Result<Option<cap_std::fs::Dir>> {
    let Some(homes) = state.runtime.homes() else {
        return Err(AppError::Conflict(format!(
            "this runtime keeps the outputs where daas cannot read them: they are in the owner's home, {}",
            crate::runtime::job_output(session.id)
        )));
    };
    outputs::folder(homes, &session.owner, session.id)
}

/// The files the job wrote (volume, previews, `summary.json`), with their sizes; empty
/// until it writes some. Owner and members only (404 for anyone else).
#[utoipa::path(get, path = "/api/v1/jobs/{id}/outputs", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's session id")),
    responses((status = 200, body = Vec<Output>), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id, session.id = %id))]
pub async fn job_outputs(state: AppState, user: CurrentUser, Path(id): Path<Uuid>) -> Result<Json<Vec<Output>>> {
    let session = job_session(&state, &user, id).await?;
    let listed = tokio::task::spawn_blocking(move || match output_folder(&state, &session)? {
        Some(dir) => outputs::list(&dir),
        None => Ok(Vec::new()),
    })
    .await
    .map_err(anyhow::Error::from)??;
    Ok(Json(listed))
}

/// One file of the job's outputs, e.g. `preview.png`, `summary.json`,
/// `volume/slice_00000.tif`. PNG images are shown inline; everything else is a download.
/// 400 for a path with `..`; 404 when there is no such file (a symbolic link is none).
#[utoipa::path(get, path = "/api/v1/jobs/{id}/outputs/{*path}", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's session id"),
           ("path" = String, Path, description = "Relative to the job's output folder")),
    responses((status = 200, content_type = "application/octet-stream"), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id, session.id = %id))]
pub async fn job_output(
    state: AppState,
    user: CurrentUser,
    Path((id, path)): Path<(Uuid, String)>,
) -> Result<Response> {
    let session = job_session(&state, &user, id).await?;
    outputs::parts(&path)?;
    let wanted = path.clone();
    let file = tokio::task::spawn_blocking(move || -> Result<Option<std::fs::File>> {
        let Some(dir) = output_folder(&state, &session)? else { return Ok(None) };
        Ok(outputs::open(&dir, &outputs::parts(&wanted)?)?.map(cap_std::fs::File::into_std))
    })
    .await
    .map_err(anyhow::Error::from)??
    .ok_or(AppError::NotFound)?;
    let length = file.metadata().map_err(anyhow::Error::from)?.len();
    let (content_type, inline) = outputs::content_type(&path);
    let name = path.rsplit('/').next().unwrap_or("output").replace(['"', '\\'], "_");
    let disposition =
        if inline { format!("inline; filename=\"{name}\"") } else { format!("attachment; filename=\"{name}\"") };
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file)));
    Ok((
        [
            ("content-type", content_type.to_owned()),
            ("content-length", length.to_string()),
            ("content-disposition", disposition),
            ("x-content-type-options", "nosniff".to_owned()),
            ("content-security-policy", "sandbox; default-src 'none'".to_owned()),
            ("cache-control", "private, no-cache".to_owned()),
        ],
        body,
    )
        .into_response())
}
