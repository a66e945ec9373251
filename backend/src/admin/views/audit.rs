//! The audit log page: the events matching a filter, page by page.

use askama::Template;

use super::{when, AdminPage};
use crate::admin::audit_log::{self, AuditFilter};
use crate::state::AppState;
use crate::web::page::{render, Ctx, FormError, PageResult};
use crate::web::Query;

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    ctx: Ctx,
    events: Vec<AuditRow>,
    total: i64,
    f: AuditFilter,
    query: String,
    page: i64,
    pages: i64,
    error: Option<FormError>,
}

pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub details: String,
    pub remote_addr: String,
}

pub(super) async fn audit_page(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    Query(f): Query<AuditFilter>,
) -> PageResult {
    let per_page = 50;
    let query = f.query_string();
    let (events, total, page, error) = match audit_log::search(&state.db, &f, per_page).await {
        Ok(found) => (found.items, found.total, found.page, None),
        Err(err) => (Vec::new(), 0, 1, Some(FormError::of(err)?)),
    };
    let events = events
        .into_iter()
        .map(|e| AuditRow {
            at: when(e.at),
            actor: e.actor.unwrap_or_default(),
            action: e.action,
            object: match (e.object_type, e.object_id) {
                (Some(t), Some(i)) => format!("{t} {i}"),
                (t, i) => t.or(i).unwrap_or_default(),
            },
            details: if e.details.as_object().is_some_and(|d| d.is_empty()) {
                String::new()
            } else {
                e.details.to_string()
            },
            remote_addr: e.remote_addr.unwrap_or_default(),
        })
        .collect();
    let pages = ((total + per_page - 1) / per_page).max(1);
    render(&AuditPage { ctx, events, total, f, query, page, pages, error })
}
