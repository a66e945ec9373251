//! The remote-access page: who connected to which session, from where, for how long
//! (newest first), filtered by person or session, with the CSV export beside it.

use askama::Template;

use super::AdminPage;
use crate::sessions::access::{self, AccessFilter};
use crate::sessions::sharing::{line, AccessLine};
use crate::state::AppState;
use crate::web::page::{render, Ctx, FormError, PageResult};
use crate::web::Query;

#[derive(Template)]
#[template(path = "admin/access.html")]
struct AccessPage {
    ctx: Ctx,
    rows: Vec<(uuid::Uuid, AccessLine)>,
    user: String,
    session: String,
    from: String,
    to: String,
    query: String,
    error: Option<FormError>,
}

/// Rows one page shows.
const SHOWN: i64 = 200;

pub(super) async fn access_page(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    Query(f): Query<AccessFilter>,
) -> PageResult {
    let (rows, error) = match access::search(&state.db, &f, true, SHOWN).await {
        Ok(rows) => (rows.into_iter().map(|a| (a.session, line(a))).collect(), None),
        Err(err) => (Vec::new(), Some(FormError::of(err)?)),
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    render(&AccessPage {
        ctx,
        rows,
        user: text(&f.user),
        session: text(&f.session),
        from: text(&f.from),
        to: text(&f.to),
        query: f.query_string(),
        error,
    })
}
