//! `POST /api/v1/jobs`, `GET /api/v1/jobs/{id}`, `GET /api/v1/jobs/{id}/logs`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::db;
use crate::audit::Actor;
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};
use crate::sessions::db::{self as sessions, Session};
use crate::sessions::lifecycle::launch::{self, LaunchRequest};
use crate::state::AppState;
use crate::web::{Json, Path, Query};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(submit_job)).routes(routes!(get_job)).routes(routes!(job_logs))
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
    /// Its exit code once it has ended.
    pub exit_code: Option<i32>,
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
        exit_code: row.exit_code,
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
    let launch = LaunchRequest { image: request.image, flavour: request.flavour, experiment: request.experiment };
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
