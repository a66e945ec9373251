//! The sessions page: every session, filtered, with a stop form and an extend form per
//! session. Its list and stop form serve a beamline's staff page too (`crate::beamlines`).

use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use super::{number, when, AdminPage};
use crate::admin::sessions;
use crate::audit::Actor;
use crate::sessions::lifecycle::expiry::NewEnd;
use crate::sessions::lifecycle::stop::{stop, Scope, StopResult};
use crate::sessions::lifecycle::SessionState;
use crate::state::AppState;
use crate::web::page::{path_segment, render, Ctx, FormError, PageError, PageResult};
use crate::web::{Form, Path, Query};

pub struct SessionRow {
    pub id: Uuid,
    pub kind: String,
    pub state: String,
    pub owner: String,
    pub image: String,
    pub proposal: String,
    pub experiment: String,
    pub beamline: String,
    pub resources: String,
    pub created: String,
    pub expires: String,
    /// Can still be stopped (ticked in the stop form).
    pub active: bool,
}

/// The sessions list of the admin page and of a beamline's staff page (`crate::beamlines`):
/// the same filters, table and stop form, over a different scope.
pub struct SessionList {
    pub sessions: Vec<SessionRow>,
    pub total: i64,
    pub f: SessionFilter,
    /// The choices of the state filter: `active`, then every state.
    pub states: Vec<&'static str>,
    /// Where the filter and the stop form go: `/admin/sessions` or `/beamlines/BL11/sessions`.
    pub base: String,
    /// The beamline the list is narrowed to (staff pages): no beamline filter, no extend.
    pub beamline: Option<String>,
    /// The changes stream the list follows (`/api/v1/sessions/changes?...`).
    pub follow: String,
    /// The filters as a query string, for redrawing the list as filtered.
    pub query: String,
    pub error: Option<FormError>,
    pub done: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/sessions.html")]
struct SessionsPage {
    ctx: Ctx,
    list: SessionList,
}

/// The list alone, as the page redraws it when a session in it changes.
#[derive(Template)]
#[template(path = "admin/_session_table.html")]
pub struct SessionTable {
    pub ctx: Ctx,
    pub list: SessionList,
}

/// The filters of the sessions list, as typed.
#[derive(Deserialize, Default)]
pub struct SessionFilter {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub proposal: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub beamline: String,
}

/// The newest 100 sessions (of `beamline`, for its staff) matching `f`; a bad filter is a
/// message, not an error.
pub async fn session_list(
    db: &sqlx::PgPool,
    beamline: Option<&str>,
    f: SessionFilter,
    error: Option<FormError>,
    done: Option<String>,
) -> Result<SessionList, PageError> {
    let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let filter = sessions::Filter {
        state: opt(&f.state),
        user: opt(&f.user),
        proposal: opt(&f.proposal),
        image: opt(&f.image),
        beamline: opt(&f.beamline),
    };
    let base = match beamline {
        None => "/admin/sessions".to_owned(),
        Some(b) => format!("/beamlines/{}/sessions", path_segment(b)),
    };
    let states = std::iter::once("active").chain(SessionState::ALL.map(SessionState::as_str)).collect();
    let follow = match beamline {
        None => "/api/v1/sessions/changes?all=true".to_owned(),
        Some(b) => format!("/api/v1/sessions/changes?beamline={}", path_segment(b)),
    };
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("state", &f.state),
            ("user", &f.user),
            ("proposal", &f.proposal),
            ("image", &f.image),
            ("beamline", &f.beamline),
        ])
        .finish();
    let mut list = SessionList {
        sessions: Vec::new(),
        total: 0,
        f,
        states,
        base,
        beamline: beamline.map(str::to_owned),
        follow,
        query,
        error,
        done,
    };
    let (items, total) = match sessions::list(db, beamline, filter, 100, 0).await {
        Ok(page) => page,
        Err(err) => {
            list.error = Some(FormError::of(err)?);
            return Ok(list);
        }
    };
    list.total = total;
    list.sessions = items
        .into_iter()
        .map(|s| SessionRow {
            active: SessionState::STOPPABLE.contains(&s.state),
            id: s.id,
            kind: s.kind,
            state: s.state.to_string(),
            owner: s.owner,
            image: s.image,
            proposal: s.proposal,
            experiment: s.experiment,
            beamline: s.beamline,
            resources: format!(
                "{} CPU, {} GiB{}",
                f64::from(s.cpu_millis) / 1000.0,
                s.memory_mib / 1024,
                if s.gpus > 0 { format!(", {} GPU", s.gpus) } else { String::new() }
            ),
            created: when(s.created_at),
            expires: match s.extended_minutes {
                0 => when(s.expires_at),
                m => format!(
                    "{} (extended by {} at its users' request)",
                    when(s.expires_at),
                    crate::sessions::lifecycle::expiry::hm(time::Duration::minutes(m.into()))
                ),
            },
        })
        .collect();
    Ok(list)
}

/// The stop form: the sessions ticked.
#[derive(Deserialize)]
pub struct StopForm {
    /// The ids ticked (`lifecycle::stop::stop` counts each once).
    #[serde(default)]
    pub ids: Vec<Uuid>,
}

/// What a stop did, for the line above the list.
pub fn stopped_message(result: &StopResult) -> String {
    format!("{} session(s) stopping; {} left as they were.", result.stopping.len(), result.unchanged.len())
}

async fn sessions_view(
    state: &AppState,
    ctx: Ctx,
    f: SessionFilter,
    error: Option<FormError>,
    done: Option<String>,
) -> PageResult {
    let list = session_list(&state.db, None, f, error, done).await?;
    render(&SessionsPage { ctx, list })
}

pub(super) async fn sessions_page(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    Query(f): Query<SessionFilter>,
) -> PageResult {
    sessions_view(&state, ctx, f, None, None).await
}

pub(super) async fn session_table(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    Query(f): Query<SessionFilter>,
) -> PageResult {
    render(&SessionTable { ctx, list: session_list(&state.db, None, f, None, None).await? })
}

pub(super) async fn stop_sessions(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Form(form): Form<StopForm>,
) -> PageResult {
    let ids = form.ids;
    if ids.is_empty() {
        let error = Some("Tick the sessions to stop first.".into());
        return sessions_view(&state, ctx, SessionFilter::default(), error, None).await;
    }
    let result = stop(&state, &actor, Scope::All, &ids).await?;
    sessions_view(&state, ctx, SessionFilter::default(), None, Some(stopped_message(&result))).await
}

/// The extend form: hours, as typed.
#[derive(Deserialize)]
pub(super) struct ExtendForm {
    #[serde(default)]
    hours: String,
}

pub(super) async fn extend_session(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Path(id): Path<Uuid>,
    Form(form): Form<ExtendForm>,
) -> PageResult {
    let hours = number("hours", &form.hours).ok().map(|h| h.unwrap_or(4));
    let Some(hours) = hours.filter(|h| (1..=24 * 90).contains(h)) else {
        let error = Some("Extend by 1 hour to 90 days.".into());
        return sessions_view(&state, ctx, SessionFilter::default(), error, None).await;
    };
    match sessions::extend(&state.db, &actor, id, NewEnd::Later(time::Duration::hours(hours.into()))).await {
        Ok(s) => {
            let done = format!("Session of {} now expires {}.", s.owner, when(s.expires_at));
            sessions_view(&state, ctx, SessionFilter::default(), None, Some(done)).await
        }
        Err(err) => sessions_view(&state, ctx, SessionFilter::default(), Some(FormError::of(err)?), None).await,
    }
}
