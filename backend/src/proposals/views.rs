//! The proposals pages: the searchable list with favourites, one proposal with its
//! experiments and datasets, and the star toggle (a form, enhanced by htmx).

use askama::Template;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use super::db::{self, Member, ProposalSummary};
use crate::state::AppState;
use crate::web::page::{human_bytes, is_htmx, render, see_other, Ctx, PageResult, PageUser};
use crate::web::{Form, Path, Query};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { see_other("/proposals") }))
        .route("/proposals", get(proposals_page))
        .route("/proposals/{id}", get(proposal_page))
        .route("/proposals/{id}/favourite", post(toggle_favourite))
}

const PER_PAGE: i64 = 25;
const DATE: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day] [hour]:[minute] UTC");

#[derive(Template)]
#[template(path = "proposals/page.html")]
struct ProposalsPage {
    ctx: Ctx,
    items: Vec<ProposalSummary>,
    q: String,
    beamline: String,
    beamlines: Vec<String>,
    page: i64,
    pages: i64,
    total: i64,
}

#[derive(Deserialize)]
struct ListParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    beamline: String,
    page: Option<i64>,
}

async fn proposals_page(
    state: AppState,
    PageUser { user, ctx }: PageUser,
    Query(params): Query<ListParams>,
) -> PageResult {
    let (page, _, offset) = super::routes::paginate(params.page, Some(PER_PAGE))?;
    let q = params.q.trim().to_string();
    let beamline = params.beamline.trim().to_string();
    let filter = db::ListFilter {
        search: Some(q.as_str()).filter(|s| !s.is_empty()),
        beamline: Some(beamline.as_str()).filter(|s| !s.is_empty()),
        limit: PER_PAGE,
        offset,
    };
    let (items, total) = db::list(&state.db, &user, &filter).await?;
    let beamlines = db::visible_beamlines(&state.db, &user).await?;
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    render(&ProposalsPage { ctx, items, q, beamline, beamlines, page, pages, total })
}

/// A proposal as the page shows it.
pub struct ProposalView {
    pub identifier: String,
    pub title: String,
    pub abstract_: String,
    pub beamline: String,
    pub role: Option<String>,
    pub favourite: bool,
}

pub struct ExperimentView {
    pub code: String,
    pub beamline: String,
    pub starts: String,
    pub ends: String,
    pub datasets: Vec<DatasetView>,
}

pub struct DatasetView {
    pub name: String,
    pub location: String,
    pub size: String,
    pub metadata: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "proposals/detail.html")]
struct ProposalPage {
    ctx: Ctx,
    p: ProposalView,
    members: Vec<Member>,
    experiments: Vec<ExperimentView>,
}

async fn proposal_page(state: AppState, PageUser { user, ctx }: PageUser, Path(id): Path<String>) -> PageResult {
    let proposal = db::find_visible(&state.db, &user, &id).await?.ok_or(crate::error::AppError::NotFound)?;
    let experiments = db::experiments(&state.db, proposal.id)
        .await?
        .into_iter()
        .map(|e| ExperimentView {
            code: e.code,
            beamline: e.beamline,
            starts: e.starts_at.format(DATE).unwrap_or_default(),
            ends: e.ends_at.format(DATE).unwrap_or_default(),
            datasets: e
                .datasets
                .into_iter()
                .map(|d| DatasetView {
                    name: d.name,
                    location: d.location,
                    size: human_bytes(&d.size_bytes),
                    metadata: d
                        .metadata
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), String::from)))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect(),
        })
        .collect();
    let members = db::members(&state.db, proposal.id).await?;
    let p = ProposalView {
        identifier: proposal.identifier,
        title: proposal.title,
        abstract_: proposal.abstract_,
        beamline: proposal.beamline,
        role: proposal.role,
        favourite: proposal.favourite,
    };
    render(&ProposalPage { ctx, p, members, experiments })
}

#[derive(Template)]
#[template(path = "proposals/_star.html")]
struct Star {
    ctx: Ctx,
    p: ProposalView,
}

#[derive(Deserialize)]
struct FavouriteForm {
    favourite: bool,
}

/// Stars or unstars; htmx gets the new star, a plain form goes back to the list.
async fn toggle_favourite(
    state: AppState,
    PageUser { user, ctx }: PageUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<FavouriteForm>,
) -> PageResult {
    let proposal = db::set_favourite(&state.db, &user, &id, form.favourite).await?;
    if is_htmx(&headers) {
        let p = ProposalView {
            identifier: proposal.identifier,
            title: proposal.title,
            abstract_: String::new(),
            beamline: proposal.beamline,
            role: proposal.role,
            favourite: form.favourite,
        };
        return render(&Star { ctx, p });
    }
    Ok(see_other("/proposals"))
}
