//! The usage page: the table and the chart of CPU-hours, GPU-hours and sessions.

use askama::Template;

use super::AdminPage;
use crate::admin::usage::{self, UsageParams, UsageRow};
use crate::state::AppState;
use crate::web::page::{render, Ctx, FormError, PageResult};
use crate::web::Query;

#[derive(Template)]
#[template(path = "admin/usage.html")]
struct UsagePage {
    ctx: Ctx,
    by: String,
    from: String,
    to: String,
    metric: String,
    rows: Vec<UsageRow>,
    /// The same filter as a query string, for the chart and the CSV link.
    query: String,
    error: Option<FormError>,
}

pub(super) async fn usage_page(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    Query(params): Query<UsageParams>,
) -> PageResult {
    let by = params.by.clone().filter(|b| !b.is_empty()).unwrap_or_else(|| "month".into());
    let from = params.from.clone().unwrap_or_default();
    let to = params.to.clone().unwrap_or_default();
    let metric = params.metric.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| "cpu_hours".into());
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("by", &by)
        .append_pair("from", &from)
        .append_pair("to", &to)
        .append_pair("metric", &metric)
        .finish();
    let (rows, error) = match usage::compute(&state.db, &params).await {
        Ok((_, rows)) => (rows, None),
        Err(err) => (Vec::new(), Some(FormError::of(err)?)),
    };
    render(&UsagePage { ctx, by, from, to, metric, rows, query, error })
}
