//! Reading the audit log: search and filter by actor, action, object and time, page by
//! page or as CSV. There is no route that changes it (and the table refuses changes).

use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::IntoParams;

use super::db::audit_log as db;
pub use super::db::audit_log::AuditEvent;
use super::{filter, paginate, spreadsheet_safe, Page};
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::{AdminUser, Json, Query};

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Who acted: a username (or `cli`).
    pub actor: Option<String>,
    /// An action (`image.update`) or a prefix of whole words (`image`, `session`).
    pub action: Option<String>,
    /// The kind of object, e.g. `session`, `image`, `user`.
    pub object_type: Option<String>,
    /// The object's id.
    pub object_id: Option<String>,
    /// From this time on (RFC 3339).
    pub from: Option<String>,
    /// Before this time (RFC 3339).
    pub to: Option<String>,
    #[param(minimum = 1)]
    pub page: Option<i64>,
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<i64>,
}

fn time(field: &str, s: &Option<String>) -> Result<Option<OffsetDateTime>> {
    filter(s)
        .map(|s| OffsetDateTime::parse(s, &Rfc3339).map_err(|_| AppError::invalid(field, "must be an RFC 3339 time")))
        .transpose()
}

/// Audit events, newest first.
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin", params(AuditFilter),
    responses((status = 200, body = Page<AuditEvent>), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_audit_events(
    state: AppState,
    _admin: AdminUser,
    Query(f): Query<AuditFilter>,
) -> Result<Json<Page<AuditEvent>>> {
    Ok(Json(search(&state.db, &f, 20).await?))
}

/// A page of the events matching the filter, newest first (`per_page` when the filter
/// does not say).
pub async fn search(db: &sqlx::PgPool, f: &AuditFilter, per_page: i64) -> Result<Page<AuditEvent>> {
    let (page, per_page, offset) = paginate(f.page, Some(f.per_page.unwrap_or(per_page)))?;
    let matching = f.matching()?;
    let items = db::page(db, &matching, per_page, offset).await?;
    let total = db::count(db, &matching).await?;
    Ok(Page { items, total, page, per_page })
}

impl AuditFilter {
    /// What the events must match, each time checked.
    fn matching(&self) -> Result<db::Matching<'_>> {
        Ok(db::Matching {
            actor: filter(&self.actor),
            action: filter(&self.action),
            object_type: filter(&self.object_type),
            object_id: filter(&self.object_id),
            from: time("from", &self.from)?,
            to: time("to", &self.to)?,
        })
    }

    /// The filter (not the page) as a query string, for links to other pages and the CSV.
    pub fn query_string(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("object_type", &self.object_type),
            ("object_id", &self.object_id),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(v) = filter(value) {
                q.append_pair(key, v);
            }
        }
        q.finish()
    }

    /// A filter field for a form (empty when unset).
    pub fn field(&self, key: &str) -> &str {
        let value = match key {
            "actor" => &self.actor,
            "action" => &self.action,
            "object_type" => &self.object_type,
            "object_id" => &self.object_id,
            "from" => &self.from,
            _ => &self.to,
        };
        value.as_deref().unwrap_or("")
    }
}

/// Most rows one CSV export holds; narrow the filter for more.
const CSV_MAX: i64 = 100_000;

/// The matching events as CSV, oldest first (at most 100 000 rows).
#[utoipa::path(get, path = "/api/v1/admin/audit.csv", tag = "admin", params(AuditFilter),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn export_audit_events(
    state: AppState,
    _admin: AdminUser,
    Query(f): Query<AuditFilter>,
) -> Result<impl IntoResponse> {
    let events = db::oldest(&state.db, &f.matching()?, CSV_MAX).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "id",
        "at",
        "actor",
        "action",
        "object_type",
        "object_id",
        "details",
        "remote_addr",
        "request_id",
    ])
    .map_err(anyhow::Error::from)?;
    for e in events {
        out.write_record([
            e.id.to_string(),
            e.at.format(&Rfc3339).map_err(anyhow::Error::from)?,
            spreadsheet_safe(e.actor.unwrap_or_default()),
            e.action,
            spreadsheet_safe(e.object_type.unwrap_or_default()),
            spreadsheet_safe(e.object_id.unwrap_or_default()),
            spreadsheet_safe(e.details.to_string()),
            spreadsheet_safe(e.remote_addr.unwrap_or_default()),
            spreadsheet_safe(e.request_id.unwrap_or_default()),
        ])
        .map_err(anyhow::Error::from)?;
    }
    let bytes = out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"audit.csv\""),
        ],
        bytes,
    ))
}
