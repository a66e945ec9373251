//! The page of a beamline's sessions (`/beamlines/{beamline}/sessions`) for its staff:
//! the admin console's sessions list and stop form, narrowed to the beamline.

use askama::Template;
use axum::routing::{get, post};
use axum::Router;

use crate::admin::views::sessions::{
    session_list, stopped_message, SessionFilter, SessionList, SessionTable, StopForm,
};
use crate::audit::Actor;
use crate::sessions::lifecycle::stop::{stop, Scope};
use crate::state::AppState;
use crate::web::page::{render, Ctx, PageResult, PageUser};
use crate::web::{Form, Path, Query};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/beamlines/{beamline}/sessions", get(beamline_sessions_page))
        .route("/beamlines/{beamline}/sessions/list", get(beamline_session_table))
        .route("/beamlines/{beamline}/sessions/stop", post(stop_beamline_sessions))
}

#[derive(Template)]
#[template(path = "beamlines/sessions.html")]
struct BeamlineSessionsPage {
    ctx: Ctx,
    beamline: String,
    list: SessionList,
}

async fn beamline_sessions_page(
    state: AppState,
    PageUser { user, ctx }: PageUser,
    Path(beamline): Path<String>,
    Query(f): Query<SessionFilter>,
) -> PageResult {
    let list = staff_list(&state, &user, &beamline, f).await?;
    render(&BeamlineSessionsPage { ctx, beamline, list })
}

/// The beamline's sessions as filtered, for its staff (404 for anyone else). The beamline is
/// the scope: a beamline filter typed into the URL changes nothing.
async fn staff_list(
    state: &AppState,
    user: &crate::auth::identity::CurrentUser,
    beamline: &str,
    f: SessionFilter,
) -> Result<SessionList, crate::web::page::PageError> {
    super::check_staff(&state.db, user, beamline).await?;
    session_list(&state.db, Some(beamline), SessionFilter { beamline: String::new(), ..f }, None, None).await
}

/// The list alone, as the page redraws it when a session in it changes.
async fn beamline_session_table(
    state: AppState,
    PageUser { user, ctx }: PageUser,
    Path(beamline): Path<String>,
    Query(f): Query<SessionFilter>,
) -> PageResult {
    render(&SessionTable { ctx, list: staff_list(&state, &user, &beamline, f).await? })
}

async fn stop_beamline_sessions(
    state: AppState,
    PageUser { user, ctx }: PageUser,
    actor: Actor,
    Path(beamline): Path<String>,
    Form(form): Form<StopForm>,
) -> PageResult {
    super::check_staff(&state.db, &user, &beamline).await?;
    let ids = form.ids;
    let (error, done) = if ids.is_empty() {
        (Some("Tick the sessions to stop first.".into()), None)
    } else {
        let result = stop(&state, &actor, Scope::Beamline(&beamline), &ids).await?;
        (None, Some(stopped_message(&result)))
    };
    let list = session_list(&state.db, Some(&beamline), SessionFilter::default(), error, done).await?;
    render(&BeamlineSessionsPage { ctx, beamline, list })
}
