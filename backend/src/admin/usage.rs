//! Usage: CPU-hours, GPU-hours and session counts per month and per user, proposal,
//! beamline or image, from the session history in Postgres; as JSON, CSV and an SVG bar
//! chart drawn here (a few rectangles need no charting library).
//!
//! A session uses its granted CPU and GPUs from `started_at` to `stopped_at` (or now, while
//! it runs); its time is split exactly at month boundaries (UTC). A session counts in the
//! month it started.

use std::fmt::Write;

use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use time::{Date, Month, PrimitiveDateTime, Time};
use utoipa::IntoParams;

use super::db::usage as db;
pub use super::db::usage::UsageRow;
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::{AdminUser, Json, Query};

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// `month` (default), `user`, `proposal`, `beamline` or `image`; rows are per month and
    /// per this.
    pub by: Option<String>,
    /// First month, `YYYY-MM` (UTC).
    pub from: Option<String>,
    /// Last month, `YYYY-MM` (UTC).
    pub to: Option<String>,
    /// For the chart: `cpu_hours` (default), `gpu_hours` or `sessions`.
    pub metric: Option<String>,
}

struct Query_ {
    by: &'static str,
    key: db::Key,
    from: Option<PrimitiveDateTime>,
    to: Option<PrimitiveDateTime>,
}

fn parse_month(field: &str, s: &Option<String>) -> Result<Option<PrimitiveDateTime>> {
    let Some(s) = super::filter(s) else { return Ok(None) };
    let bad = || AppError::invalid(field, format!("{s:?} is not a month (YYYY-MM)"));
    let (y, m) = s.split_once('-').ok_or_else(bad)?;
    let (y, m): (i32, u8) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let month = Month::try_from(m).map_err(|_| bad())?;
    let date = Date::from_calendar_date(y, month, 1).map_err(|_| bad())?;
    Ok(Some(PrimitiveDateTime::new(date, Time::MIDNIGHT)))
}

fn parse(params: &UsageParams) -> Result<Query_> {
    let (by, key) = match super::filter(&params.by).unwrap_or("month") {
        "month" => ("month", db::Key::Month),
        "user" => ("user", db::Key::User),
        "proposal" => ("proposal", db::Key::Proposal),
        "beamline" => ("beamline", db::Key::Beamline),
        "image" => ("image", db::Key::Image),
        other => {
            return Err(AppError::invalid("by", format!("{other:?}: use month, user, proposal, beamline or image")))
        }
    };
    let from = parse_month("from", &params.from)?;
    let to = parse_month("to", &params.to)?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(AppError::invalid("to", "is before from"));
        }
    }
    Ok(Query_ { by, key, from, to })
}

/// The usage rows, by month then key.
pub async fn compute(db: &sqlx::PgPool, params: &UsageParams) -> Result<(&'static str, Vec<UsageRow>)> {
    let q = parse(params)?;
    let rows = db::usage(db, q.key, q.from, q.to).await?;
    Ok((q.by, rows))
}

/// Usage per month and per user, proposal, beamline or image.
#[utoipa::path(get, path = "/api/v1/admin/usage", tag = "admin", params(UsageParams),
    responses((status = 200, body = Vec<UsageRow>), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_usage(
    state: AppState,
    _admin: AdminUser,
    Query(params): Query<UsageParams>,
) -> Result<Json<Vec<UsageRow>>> {
    Ok(Json(compute(&state.db, &params).await?.1))
}

/// The same as CSV, for a spreadsheet.
#[utoipa::path(get, path = "/api/v1/admin/usage.csv", tag = "admin", params(UsageParams),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn export_usage(
    state: AppState,
    _admin: AdminUser,
    Query(params): Query<UsageParams>,
) -> Result<impl IntoResponse> {
    let (by, rows) = compute(&state.db, &params).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let key_column = if by == "month" { None } else { Some(by) };
    let mut header = vec!["month"];
    header.extend(key_column);
    header.extend(["sessions", "cpu_hours", "gpu_hours"]);
    out.write_record(&header).map_err(anyhow::Error::from)?;
    for r in rows {
        let mut record = vec![r.month.clone()];
        if key_column.is_some() {
            record.push(super::spreadsheet_safe(r.key.clone()));
        }
        record.extend([r.sessions.to_string(), format!("{:.3}", r.cpu_hours), format!("{:.3}", r.gpu_hours)]);
        out.write_record(&record).map_err(anyhow::Error::from)?;
    }
    let bytes = out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"usage-by-{by}.csv\"")),
        ],
        bytes,
    ))
}

/// A horizontal bar chart of one metric, summed per month or per key over the months asked.
#[utoipa::path(get, path = "/api/v1/admin/usage.svg", tag = "admin", params(UsageParams),
    responses((status = 200, content_type = "image/svg+xml", body = String), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn chart_usage(
    state: AppState,
    _admin: AdminUser,
    Query(params): Query<UsageParams>,
) -> Result<impl IntoResponse> {
    let metric = super::filter(&params.metric).unwrap_or("cpu_hours");
    let label = match metric {
        "cpu_hours" => "CPU-hours",
        "gpu_hours" => "GPU-hours",
        "sessions" => "sessions",
        other => return Err(AppError::invalid("metric", format!("{other:?}: use cpu_hours, gpu_hours or sessions"))),
    };
    let (by, rows) = compute(&state.db, &params).await?;
    let mut bars: Vec<(String, f64)> = Vec::new();
    for r in rows {
        let value = match metric {
            "cpu_hours" => r.cpu_hours,
            "gpu_hours" => r.gpu_hours,
            _ => r.sessions as f64,
        };
        match bars.iter_mut().find(|(k, _)| *k == r.key) {
            Some((_, v)) => *v += value,
            None => bars.push((r.key, value)),
        }
    }
    if by != "month" {
        bars.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    }
    let svg = bar_chart(&format!("{label} by {by}"), &bars);
    Ok(([(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")], svg))
}

/// Escapes text for XML.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// At most this many bars; the rest are summed into one "others" bar.
const MAX_BARS: usize = 30;

/// A self-contained SVG: one labelled horizontal bar per entry, scaled to the largest.
pub fn bar_chart(title: &str, bars: &[(String, f64)]) -> String {
    let mut bars: Vec<(String, f64)> = bars.to_vec();
    if bars.len() > MAX_BARS {
        let rest: f64 = bars[MAX_BARS - 1..].iter().map(|b| b.1).sum();
        let others = bars.len() - (MAX_BARS - 1);
        bars.truncate(MAX_BARS - 1);
        bars.push((format!("{others} others"), rest));
    }
    let (label_w, bar_w, value_w, row_h, top) = (180.0, 420.0, 100.0, 24.0, 40.0);
    let width = label_w + bar_w + value_w;
    let height = top + row_h * bars.len().max(1) as f64 + 10.0;
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{t}" font-family="sans-serif" font-size="12"><title>{t}</title><text x="0" y="20" font-size="14" font-weight="bold">{t}</text>"#,
        t = xml(title)
    );
    if bars.is_empty() {
        let _ = write!(svg, r#"<text x="0" y="{}">no usage in this period</text>"#, top + 16.0);
    }
    for (n, (key, value)) in bars.iter().enumerate() {
        let y = top + row_h * n as f64;
        let w = if max > 0.0 { (value / max * bar_w).max(if *value > 0.0 { 1.0 } else { 0.0 }) } else { 0.0 };
        let shown = if value.fract() == 0.0 { format!("{value:.0}") } else { format!("{value:.2}") };
        let short: String = key.chars().take(26).collect();
        let _ = write!(
            svg,
            r##"<g><title>{k}: {shown}</title><text x="{lx}" y="{ty}" text-anchor="end">{s}</text><rect x="{label_w}" y="{ry}" width="{w:.1}" height="{bh}" fill="#3b6ea5"/><text x="{vx:.1}" y="{ty}">{shown}</text></g>"##,
            k = xml(key),
            s = xml(&short),
            lx = label_w - 6.0,
            ty = y + 16.0,
            ry = y + 4.0,
            bh = row_h - 8.0,
            vx = label_w + w + 6.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_scales_bars_to_the_largest_and_escapes_labels() {
        let svg = bar_chart("CPU-hours by user", &[("a<b".into(), 10.0), ("c".into(), 5.0), ("d".into(), 0.0)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"width="420.0""#), "{svg}");
        assert!(svg.contains(r#"width="210.0""#), "{svg}");
        assert!(svg.contains(r#"width="0.0""#), "{svg}");
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
    }

    #[test]
    fn chart_folds_the_tail_into_others() {
        let bars: Vec<(String, f64)> = (0..40).map(|n| (format!("k{n}"), 1.0)).collect();
        let svg = bar_chart("t", &bars);
        assert_eq!(svg.matches("<rect").count(), MAX_BARS);
        assert!(svg.contains("11 others: 11"), "{svg}");
    }

    #[test]
    fn months_are_checked() {
        assert!(parse_month("from", &Some("2026-13".into())).is_err());
        assert!(parse_month("from", &Some("2026".into())).is_err());
        assert!(parse_month("from", &Some("2026-02".into())).unwrap().is_some());
        let p = UsageParams { by: Some("planet".into()), ..Default::default() };
        assert!(matches!(parse(&p), Err(AppError::Invalid { field, .. }) if field == "by"));
    }
}
