//! `POST /api/v1/runtime/sessions/{id}/report`: what a session's node tells daas (the Slurm
//! runtime's node program; not for people). The node secret of the session's launch is the
//! bearer token; anything else, or a session the runtime does not know, is a 404.

use axum::http::{header, HeaderMap, StatusCode};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::lifecycle::expiry::hm;
use super::lifecycle::SessionState;
use super::{db, events};
use crate::error::{AppError, Result};
use crate::runtime::NodeReport;
use crate::state::AppState;
use crate::web::{Json, Path};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(node_report))
}

/// A session's node reports where the session listens (then daas probes it there and the
/// session runs) or that the batch system's time limit is near (an event on the session).
/// Sent by `daas slurm-node`, authenticated by the session's node secret.
#[utoipa::path(post, path = "/api/v1/runtime/sessions/{id}/report", tag = "runtime", request_body = NodeReport,
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 204, description = "taken"), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(session.id = %id))]
pub async fn node_report(
    state: AppState,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(report): Json<NodeReport>,
) -> Result<StatusCode> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AppError::Unauthorized("the node secret is missing"))?;
    match state.runtime.report(id, secret.trim(), &report).await {
        Ok(true) => {}
        Ok(false) => return Err(AppError::NotFound),
        Err(e) => return Err(AppError::invalid("host", format!("{e:#}"))),
    }
    if let NodeReport::TimeLimit { seconds } = report {
        let mut tx = state.db.begin().await?;
        if let Some(from) = db::lock_state(&mut tx, id).await?.filter(|s| SessionState::UNDER_WAY.contains(s)) {
            let left = hm(time::Duration::seconds(seconds as i64));
            let message = format!("Warning: the cluster ends this session at its time limit in about {left}");
            events::add(&mut tx, id, from, &message).await?;
        }
        tx.commit().await?;
    }
    state.lifecycle.wake();
    Ok(StatusCode::NO_CONTENT)
}
