//! Proposal import from the admin console: the same JSON or CSV as `daas import
//! proposals`. A preview applies it inside a transaction that is rolled back, so it shows
//! exactly what applying would change; applying commits, with an audit event.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::audit::{self, Actor};
use crate::error::{AppError, Result};
use crate::proposals::import::{self, Format, Summary};
use crate::state::AppState;
use crate::web::{AdminUser, Json, Query};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// `json` or `csv`; when left out, the body's content type decides (`text/csv` is CSV).
    format: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportResult {
    /// False for a preview: nothing was written.
    pub applied: bool,
    pub summary: Summary,
}

fn format(params: &ImportParams, headers: &HeaderMap) -> Result<Format> {
    match super::filter(&params.format) {
        Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(other) => Err(AppError::invalid("format", format!("{other:?}: use json or csv"))),
        None => {
            let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
            Ok(if content_type.starts_with("text/csv") { Format::Csv } else { Format::Json })
        }
    }
}

fn parse(params: &ImportParams, headers: &HeaderMap, body: &Bytes) -> Result<Vec<import::Proposal>> {
    let format = format(params, headers)?;
    import::decode(body).and_then(|text| import::parse(&text, format)).map_err(invalid)
}

/// Parses an export, a fault naming its line and field.
pub fn parse_text(text: &str, format: Format) -> Result<Vec<import::Proposal>> {
    import::parse(text, format).map_err(invalid)
}

fn invalid(e: import::ImportError) -> AppError {
    AppError::invalid(e.field.clone(), format!("line {}: {}", e.line, e.message))
}

/// What an import would change, without changing anything.
#[utoipa::path(post, path = "/api/v1/admin/proposals/import/preview", tag = "admin", params(ImportParams),
    request_body(content = String, content_type = "text/plain", description = "the user office's JSON or CSV export"),
    responses((status = 200, body = ImportResult), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn preview_import(
    state: AppState,
    _admin: AdminUser,
    Query(params): Query<ImportParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ImportResult>> {
    let proposals = parse(&params, &headers, &body)?;
    Ok(Json(run(&state.db, None, &proposals).await?))
}

/// Imports proposals, members and experiments (idempotent: a second run changes nothing).
#[utoipa::path(post, path = "/api/v1/admin/proposals/import", tag = "admin", params(ImportParams),
    request_body(content = String, content_type = "text/plain", description = "the user office's JSON or CSV export"),
    responses((status = 200, body = ImportResult), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn apply_import(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Query(params): Query<ImportParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ImportResult>> {
    let proposals = parse(&params, &headers, &body)?;
    Ok(Json(run(&state.db, Some(&actor), &proposals).await?))
}

/// Applies parsed proposals: in a transaction rolled back for a preview (no `actor`), or
/// committed with its audit event.
pub async fn run(db: &sqlx::PgPool, actor: Option<&Actor>, proposals: &[import::Proposal]) -> Result<ImportResult> {
    let mut tx = db.begin().await?;
    let summary = import::apply(&mut tx, proposals).await?;
    let Some(actor) = actor else {
        tx.rollback().await?;
        return Ok(ImportResult { applied: false, summary });
    };
    let identifiers: Vec<&str> = proposals.iter().map(|p| p.identifier.as_str()).collect();
    audit::record(
        &mut *tx,
        actor,
        "proposal.import",
        "upload",
        &format!("{} proposal(s)", proposals.len()),
        serde_json::json!({"summary": summary, "proposals": identifiers}),
    )
    .await?;
    tx.commit().await?;
    Ok(ImportResult { applied: true, summary })
}
