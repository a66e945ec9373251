//! The desktop in the browser: the page embedding noVNC, and the WebSocket relay between
//! noVNC and the session's VNC server. daas logs in to the VNC server itself (the password
//! never leaves daas), offers the browser no authentication, and reads every message the
//! browser sends so only the member in control reaches the keyboard, pointer and clipboard.

use std::time::{Duration, Instant};

use super::upstream::{self, Stream};
use super::ws::{self, Incoming, Outgoing, ServerSocket};
use askama::Template;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::header::ORIGIN;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::rfb::{self, Class, ClientStream};
use crate::audit::RemoteAddr;
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};
use crate::sessions::access;
use crate::sessions::db::{find_visible, relay_target as target, RelayTarget};
use crate::sessions::events::EVERYONE;
use crate::sessions::lifecycle::SessionState;
use crate::sessions::views::{card, Card};
use crate::state::AppState;
use crate::web::auth::from_origin;
use crate::web::page::{render, Ctx, PageResult, PageUser};
use crate::web::Path;

pub fn routes() -> Router<AppState> {
    Router::new().route("/sessions/{id}/desktop", get(desktop_page)).route("/sessions/{id}/desktop/ws", get(desktop_ws))
}

/// How long the relay may take to connect and log in to the VNC server.
const LOGIN_WITHIN: Duration = Duration::from_secs(10);
/// Logins tried per viewer before answering 503: a VNC server refuses some in a burst.
const LOGIN_TRIES: u32 = 3;

/// Connects to the VNC server and logs in with daas's password; a refused or failed login
/// is tried again (a new connection each time) after a short pause, `LOGIN_TRIES` in all.
async fn login(endpoint: &str, secret: &str) -> anyhow::Result<Stream> {
    let mut pause = Duration::from_millis(100);
    let mut tries = 1;
    loop {
        let attempt = async {
            let mut server = upstream::connect(endpoint).await?;
            rfb::login(&mut server, secret).await?;
            anyhow::Ok(server)
        };
        match attempt.await {
            Ok(server) => return Ok(server),
            Err(err) if tries >= LOGIN_TRIES => return Err(err),
            Err(err) => tracing::debug!(error = format!("{err:#}"), tries, "VNC login failed, trying again"),
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
        tries += 1;
    }
}

/// 503 with `Retry-After`: the desktop did not let daas in (busy, or still starting).
fn busy() -> Response {
    let mut response =
        AppError::Unavailable("the desktop does not answer; try again in a moment".into()).into_response();
    response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("2"));
    response
}

/// At most one write of `last_activity_at` per connection in this long.
const ACTIVITY_EVERY: Duration = Duration::from_secs(5);

/// Whether `user` may type and click: the controller, unless a guest.
fn controls(t: &RelayTarget, user: Uuid) -> bool {
    t.controller == user && t.role.as_deref() != Some("guest")
}

#[derive(Template)]
#[template(path = "sessions/desktop.html")]
struct DesktopPage {
    ctx: Ctx,
    /// The session as its page shows it: its name, the way back to it, Stop.
    c: Card,
}

async fn desktop_page(state: AppState, PageUser { user, ctx }: PageUser, Path(id): Path<Uuid>) -> PageResult {
    let s = find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?;
    if s.kind != "desktop" {
        return Err(AppError::NotFound.into());
    }
    // An ended desktop has nothing to show: its page says how it ended.
    if s.state.has_ended() {
        return Ok(crate::web::page::see_other(&format!("/sessions/{id}")));
    }
    render(&DesktopPage { ctx, c: card(s, &user) })
}

/// The WebSocket noVNC connects to. Refused before the upgrade when the caller is not
/// logged in (401), not a member (404), comes from a page of another origin (`Origin`, or
/// `Sec-Fetch-Site` without it: 403), or the desktop is not running or does not accept
/// daas's password (409, 503), or is no WebSocket handshake (400).
#[tracing::instrument(skip_all, fields(user.id = %user.id, session.id = %id))]
async fn desktop_ws(
    state: AppState,
    user: CurrentUser,
    RemoteAddr(from): RemoteAddr,
    Path(id): Path<Uuid>,
    mut request: Request,
) -> Result<Response> {
    let headers = request.headers();
    if !from_origin(headers, &state.config.web.public_url.origin()) {
        tracing::debug!(origin = ?headers.get(ORIGIN), "desktop WebSocket from another site refused");
        return Err(AppError::Forbidden("this WebSocket comes from another site".into()));
    }
    let t = target(&state.db, &user, id).await?.ok_or(AppError::NotFound)?;
    if t.kind != "desktop" {
        return Err(AppError::NotFound);
    }
    let (Some(endpoint), Some(secret), SessionState::Running) = (t.endpoint.as_deref(), t.secret.as_deref(), t.state)
    else {
        return Err(AppError::Conflict("the desktop is not running".into()));
    };
    // Checked before the login, which a request that is no handshake must not cost.
    let (response, upgrade) = ws::accept(&mut request)?;
    let server = match tokio::time::timeout(LOGIN_WITHIN, login(endpoint, secret)).await {
        Ok(Ok(server)) => server,
        // Never a 101 without a desktop behind it: the browser retries after a 503.
        Ok(Err(err)) => {
            tracing::warn!(error = format!("{err:#}"), "no VNC login");
            return Ok(busy());
        }
        Err(_) => {
            tracing::warn!("no VNC login in time");
            return Ok(busy());
        }
    };
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let socket = ServerSocket::new(TokioIo::new(upgraded));
        let role = t.role.clone().unwrap_or_else(|| "admin".into());
        let record =
            match access::connect(&state.db, id, (user.id, &user.username), &role, "desktop", from.as_deref()).await {
                Ok(record) => Some(record),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot record the connection");
                    None
                }
            };
        let mut bytes = Carried::default();
        if let Err(err) = relay(&state, &user, id, t, server, socket, &mut bytes).await {
            tracing::debug!(error = %err, "desktop connection ended");
        }
        if let Some(record) = record {
            if let Err(err) = access::disconnect(&state.db, record, bytes.0, bytes.1).await {
                tracing::warn!(error = %err, "cannot record the end of the connection");
            }
        }
    });
    Ok(response)
}

/// The browser's WebSocket, with what it sent but the handshake did not use yet.
struct Browser {
    socket: ServerSocket,
    pending: Vec<u8>,
}

impl Browser {
    /// The next message, or `None` when the browser is gone (a ping is answered here).
    async fn next(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            match self.socket.recv().await? {
                Incoming::Message(bytes) => return Ok(Some(bytes)),
                Incoming::Ping(payload) => self.socket.pong(&payload).await?,
                Incoming::Close => return Ok(None),
            }
        }
    }

    async fn take(&mut self, n: usize) -> anyhow::Result<Vec<u8>> {
        while self.pending.len() < n {
            let bytes = self.next().await?.ok_or_else(|| anyhow::anyhow!("the browser left during the handshake"))?;
            self.pending.extend_from_slice(&bytes);
        }
        Ok(self.pending.drain(..n).collect())
    }
}

/// The bytes a connection carried: `(from the browser, to the browser)`.
#[derive(Default)]
struct Carried(u64, u64);

/// One task per connection owns both sockets and moves whatever is ready: updates from
/// the VNC server to the browser (read into the frame's own buffer and written with their
/// header in one write: no copy), the browser's messages (filtered) to the VNC server,
/// and session changes (control, membership, stop).
async fn relay(
    state: &AppState,
    user: &CurrentUser,
    id: Uuid,
    target: RelayTarget,
    mut server: Stream,
    socket: ServerSocket,
    carried: &mut Carried,
) -> anyhow::Result<()> {
    let mut browser = Browser { socket, pending: Vec::new() };
    // daas is the server to the browser: version 3.8, security type None only.
    browser.socket.send(rfb::VERSION).await?;
    let version = browser.take(12).await?;
    anyhow::ensure!(version == rfb::VERSION, "the browser does not speak RFB 3.8");
    browser.socket.send(&[1, 1]).await?;
    anyhow::ensure!(browser.take(1).await? == [1], "the browser chose another security type");
    browser.socket.send(&[0, 0, 0, 0]).await?;
    browser.take(1).await?;
    // ClientInit: always shared, so one viewer never disconnects the others.
    server.write_u8(1).await?;

    let mut may_input = controls(&target, user.id);
    let mut notes = state.events.subscribe();
    let mut messages = ClientStream::default();
    let mut last_activity: Option<Instant> = None;
    let mut first = std::mem::take(&mut browser.pending);
    let mut out = Outgoing::new();
    // At shutdown the relay ends; noVNC reconnects to the next daas.
    let closed = state.events.closed();
    tokio::pin!(closed);
    loop {
        let bytes = if !first.is_empty() {
            Bytes::from(std::mem::take(&mut first))
        } else {
            tokio::select! {
                read = server.read(out.payload_mut()) => {
                    let n = read?;
                    if n == 0 {
                        return Ok(());
                    }
                    carried.1 += n as u64;
                    browser.socket.send_outgoing(&mut out, n).await?;
                    continue;
                }
                // Answered here, after the `select!`: a write it cancelled would cut a frame.
                incoming = browser.socket.recv() => match incoming? {
                    Incoming::Message(bytes) => {
                        carried.0 += bytes.len() as u64;
                        bytes
                    }
                    Incoming::Ping(payload) => {
                        browser.socket.pong(&payload).await?;
                        continue;
                    }
                    Incoming::Close => return Ok(()),
                },
                _ = &mut closed => return Ok(()),
                note = notes.recv() => {
                    let relevant = match note {
                        Ok(session) => session == id || session == EVERYONE,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => false,
                    };
                    if relevant {
                        // A state, membership or control change: look again.
                        match self::target(&state.db, user, id).await {
                            Ok(Some(t)) if t.state == SessionState::Running => may_input = controls(&t, user.id),
                            // Stopped, or no longer theirs: a clean close, so noVNC does not
                            // try again.
                            Ok(_) => {
                                let _ = browser.socket.close().await;
                                return Ok(());
                            }
                            Err(err) => tracing::warn!(error = %err, "cannot re-read the session"),
                        }
                    }
                    continue;
                }
            }
        };
        let mut forward = Vec::with_capacity(bytes.len());
        let mut active = false;
        for (class, message) in messages.push(&bytes)? {
            match class {
                Class::View => forward.extend_from_slice(&message),
                Class::Input | Class::Activity if may_input => {
                    active |= class == Class::Activity;
                    forward.extend_from_slice(&message);
                }
                _ => {}
            }
        }
        if !forward.is_empty() {
            server.write_all(&forward).await?;
        }
        if active && last_activity.is_none_or(|at| at.elapsed() >= ACTIVITY_EVERY) {
            last_activity = Some(Instant::now());
            let db = state.db.clone();
            tokio::spawn(async move {
                if let Err(err) = super::db::touch(&db, &[id]).await {
                    tracing::warn!(error = %err, "cannot record activity");
                }
            });
        }
    }
}
