//! `/api/v1/sessions`: launch, list, read, stop, give more time, and follow the events of
//! a session.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::db::{self, Session, SessionEvent};
use super::events;
use super::lifecycle::expiry::{self, Extended};
use super::lifecycle::launch::{self, LaunchRequest};
use super::lifecycle::stop::{self, Scope};
use crate::audit::Actor;
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::{Json, Path, Query};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(launch_session, list_sessions))
        .routes(routes!(get_session, stop_session))
        .routes(routes!(extend_session))
        .routes(routes!(session_events))
        .routes(routes!(session_changes))
}

/// Launch a desktop or notebook on the data of an experiment. Answers at once with the
/// session in `starting`; follow `/api/v1/sessions/{id}/events` to see it become `running`.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", request_body = LaunchRequest,
    responses((status = 201, body = Session), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody),
              (status = 409, description = "over quota, e.g. \"2 of 2 sessions in use\"", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id, session.id))]
pub async fn launch_session(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Json(request): Json<LaunchRequest>,
) -> Result<(StatusCode, Json<Session>)> {
    let id = launch::launch(&state, &user, &actor, &request, request.parameters.as_ref()).await?;
    tracing::Span::current().record("session.id", tracing::field::display(id));
    let session = db::find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?;
    Ok((StatusCode::CREATED, Json(session)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only sessions that have not ended (`requested`, `starting`, `running`, `stopping`).
    active: Option<bool>,
    /// Only this kind: `desktop`, `notebook` or `job`.
    kind: Option<String>,
    /// Admins: everyone's sessions, not only their own.
    all: Option<bool>,
}

/// The caller's sessions (those they are a member of), newest first, at most 200.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", params(ListParams),
    responses((status = 200, body = Vec<Session>), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
pub async fn list_sessions(
    state: AppState,
    user: CurrentUser,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<Session>>> {
    let kind = match params.kind.as_deref() {
        Some(kind) => Some(
            crate::runtime::Kind::parse(kind)
                .ok_or_else(|| AppError::invalid("kind", "must be desktop, notebook or job"))?,
        ),
        None => None,
    };
    let sessions =
        db::list(&state.db, &user, params.all.unwrap_or(false), params.active.unwrap_or(false), kind).await?;
    Ok(Json(sessions))
}

/// One session; 404 when the caller is not one of its members.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, body = Session), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id, session.id = %id))]
pub async fn get_session(state: AppState, user: CurrentUser, Path(id): Path<Uuid>) -> Result<Json<Session>> {
    Ok(Json(db::find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?))
}

/// Stop a session, or cancel a launch that has not finished. Answers 202 with the session
/// as it is then (`stopping`, or already `stopped`; the events say when it has stopped),
/// 200 when it had already ended or was stopping. Guests may not stop.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 202, body = Session), (status = 200, body = Session),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id, session.id = %id))]
pub async fn stop_session(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<Session>)> {
    let stopping = !stop::stop(&state, &actor, Scope::Member(&user), &[id]).await?.stopping.is_empty();
    let session = db::find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?;
    Ok((if stopping { StatusCode::ACCEPTED } else { StatusCode::OK }, Json(session)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// Minutes to add to the session's end.
    pub minutes: i32,
}

/// Give a session more time: its owner and its users may add minutes to its end, up to the
/// owner's extension limit over the session's whole life (their quota's
/// `extension_minutes`, else the server's default); admins may extend any session further
/// with `/api/v1/admin/sessions/{id}/extend`. The session gets an event saying who extended it.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/extend", tag = "sessions", request_body = ExtendRequest,
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, body = Extended), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "it has ended, or that is more than is left (the message says how much is)",
               body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id, session.id = %id))]
pub async fn extend_session(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(input): Json<ExtendRequest>,
) -> Result<Json<Extended>> {
    Ok(Json(expiry::more_time(&state, &actor, &user, id, input.minutes).await?))
}

/// Server-sent events: every state change and progress message of the session, from the
/// first (or after `Last-Event-ID`), then live; the stream ends once it has stopped or
/// failed. 404 when the caller is not one of its members.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/events", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, content_type = "text/event-stream", body = SessionEvent),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id, session.id = %id))]
pub async fn session_events(
    state: AppState,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    db::find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?;
    let last =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    // Subscribe before the first read, so nothing committed in between is missed.
    let follow = Follow {
        state: state.clone(),
        id,
        last,
        notes: state.events.subscribe(),
        queue: VecDeque::new(),
        ended: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let event = f.next().await?;
        let sse = Event::default().id(event.id.to_string()).event("session").json_data(&event).ok()?;
        Some((Ok(sse), f))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// Admins: every session's changes, not only their own sessions'.
    all: Option<bool>,
    /// A beamline's sessions (its staff and admins), e.g. `BL11`.
    beamline: Option<String>,
}

/// Which sessions a changes stream follows.
enum Followed {
    /// Those the caller is a member of or invited to.
    Mine(Uuid),
    All,
    Beamline(String),
}

/// Server-sent events for pages that show many sessions: a `change` event
/// `{"session": "<id>"}` each time a followed session changes (its state, its progress, a
/// new event), so the page reads what it shows again; `{"session": null}` when anything may
/// have changed (the database's notifications were interrupted). One stream per page,
/// whatever the number of sessions on it. Follows the caller's own sessions and
/// invitations; every session with `all=true` (admins, else 403); or a beamline's with
/// `beamline=BL11` (its staff and admins, else 404).
#[utoipa::path(get, path = "/api/v1/sessions/changes", tag = "sessions", params(ChangesParams),
    responses((status = 200, content_type = "text/event-stream"), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
pub async fn session_changes(
    state: AppState,
    user: CurrentUser,
    Query(params): Query<ChangesParams>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let followed = match (params.all.unwrap_or(false), params.beamline) {
        (true, _) if !user.is_admin() => return Err(AppError::Forbidden("only admins follow every session".into())),
        (true, _) => Followed::All,
        (false, Some(beamline)) => {
            if !user.is_admin() {
                crate::beamlines::check_staff(&state.db, &user, &beamline).await?;
            }
            Followed::Beamline(beamline)
        }
        (false, None) => Followed::Mine(user.id),
    };
    // Whether a session is followed is read once per session and stream (membership and
    // beamline rarely change while a page is open; a page that changes them reloads).
    let known: std::collections::HashMap<Uuid, bool> = Default::default();
    let start = (state.clone(), followed, state.events.subscribe(), known);
    let stream = futures_util::stream::unfold(start, |(state, followed, mut notes, mut known)| async move {
        loop {
            let note = tokio::select! {
                note = notes.recv() => note,
                _ = state.events.closed() => return None,
            };
            let session = match note {
                Ok(events::EVERYONE) | Err(broadcast::error::RecvError::Lagged(_)) => None,
                Ok(id) => Some(id),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            if let Some(id) = session {
                let followed_now = match known.get(&id) {
                    Some(&yes) => yes,
                    None => {
                        let yes = match &followed {
                            Followed::All => true,
                            Followed::Mine(user) => db::is_member_or_invited(&state.db, id, *user).await.ok()?,
                            Followed::Beamline(b) => db::is_on_beamline(&state.db, id, b).await.ok()?,
                        };
                        known.insert(id, yes);
                        yes
                    }
                };
                if !followed_now {
                    continue;
                }
            }
            let event = Event::default().event("change").json_data(serde_json::json!({"session": session})).ok()?;
            return Some((Ok(event), (state, followed, notes, known)));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

struct Follow {
    state: AppState,
    id: Uuid,
    last: i64,
    notes: broadcast::Receiver<Uuid>,
    queue: VecDeque<SessionEvent>,
    ended: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<SessionEvent> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                if event.state.has_ended() {
                    self.ended = true;
                }
                return Some(event);
            }
            let rows = db::events_after(&self.state.db, self.id, self.last).await.ok()?;
            if let Some(last) = rows.last() {
                self.last = last.id;
                self.queue.extend(rows);
                continue;
            }
            if self.ended {
                return None;
            }
            // Wait for a notification about this session (or one that may have been
            // missed); no query until then. The stream ends at shutdown: the client
            // resumes after the last event it saw.
            let wait = async {
                loop {
                    match self.notes.recv().await {
                        Ok(id) if id == self.id || id == events::EVERYONE => return true,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return true,
                        Err(broadcast::error::RecvError::Closed) => return false,
                    }
                }
            };
            let more = tokio::select! {
                more = wait => more,
                _ = self.state.events.closed() => false,
            };
            if !more {
                return None;
            }
        }
    }
}
