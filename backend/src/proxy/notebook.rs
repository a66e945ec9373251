//! The notebook proxy: each notebook is served on an origin of its own,
//! `{session-id}.{sessions domain}`, so a notebook's JavaScript can never act on the
//! portal or on another notebook. The portal issues a one-time ticket; the session's
//! origin exchanges it for a cookie valid there alone; daas then forwards HTTP and
//! WebSocket traffic to Jupyter (pooled connections, bodies streamed both ways, never
//! read whole nor changed), adding the token only daas knows. Jupyter is configured to
//! render no token into its pages (`tools/jupyter/jupyter_server_config.py`), so the
//! browser never sees it. That token switches off Jupyter's own cross-site checks, so
//! daas refuses every unsafe request and WebSocket upgrade not made by a page of the
//! session's own origin, and the origin's cookie is `SameSite=Strict`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN, REFERRER_POLICY,
    SET_COOKIE, UPGRADE,
};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::distr::{Alphanumeric, SampleString};
use uuid::Uuid;

use super::db::Visitor;
use super::upstream::{self, Connector};
use super::{db, jupyter};
use crate::auth::tokens::hash;
use crate::error::AppError;
use crate::sessions::access;
use crate::sessions::events::EVERYONE;
use crate::sessions::lifecycle::SessionState;
use crate::state::AppState;
use crate::web::auth::{from_origin, is_unsafe};
use crate::web::page::{PageResult, PageUser};
use crate::web::Path;

/// The cookie of a session's origin (host-only: no `Domain` attribute).
pub const COOKIE_NAME: &str = "daas_notebook";
/// Who is asking, for Jupyter's identity provider (`tools/jupyter/jupyter_server_config.py`):
/// the username, and the display name percent-encoded (UTF-8).
const USER_HEADER: &str = "x-daas-user";
const NAME_HEADER: &str = "x-daas-name";
/// Their role in the session (`owner`, `user`, `guest`, `support`), and the portal's
/// origin (where a web app sends a person back to daas).
const ROLE_HEADER: &str = "x-daas-role";
const PORTAL_HEADER: &str = "x-daas-portal";
/// How long a ticket may wait to be used.
const TICKET_TTL_S: i32 = 30;
/// How long a session origin's cookie lasts.
const COOKIE_TTL_H: i32 = 12;
/// Activity of a session is noted at most once in this long.
const ACTIVITY_EVERY: Duration = Duration::from_secs(5);
/// How often every running notebook's kernels and terminals are read (`read_jupyter`).
const JUPYTER_READ_EVERY: Duration = Duration::from_secs(60);
/// How long one notebook may take to answer that.
const JUPYTER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Noted activity is written for all sessions at once, in one statement, this often (with
/// thousands of notebooks in use, a write per session would keep Postgres busy).
const ACTIVITY_WRITE_EVERY: Duration = Duration::from_secs(1);
/// Cached routes and cookies are read again from Postgres after this long at the latest
/// (they are also dropped at once when the session has an event).
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Past `CACHE_TTL`, a cached route or cookie is still served while it is read again in the
/// background, for this long after Postgres last confirmed it: open notebooks go on working
/// through a database outage. Stops and removals made before the outage dropped their
/// entries already (they are events).
const STALE_LIMIT: Duration = Duration::from_secs(300);
/// A stale entry is read again at most this often (while the database does not answer).
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// The upstream client (pooled) and what it knows of sessions.
pub struct Proxy {
    client: Client<Connector, Body>,
    cache: Mutex<Cache>,
    /// Each person's open WebSockets to each notebook (`(session, user)`), as one visit of
    /// the remote-access log.
    visits: Mutex<HashMap<(Uuid, Uuid), Visit>>,
}

/// A person in a notebook: from the first of the lab's WebSockets opening to the last
/// closing (and `VISIT_GRACE` more, so a reloaded page stays one visit).
#[derive(Default)]
struct Visit {
    /// Its remote-access record, once written.
    record: Option<i64>,
    open: usize,
    bytes: Arc<Carried>,
}

/// Bytes carried from the browser and to it.
#[derive(Default)]
struct Carried {
    to_session: std::sync::atomic::AtomicU64,
    to_browser: std::sync::atomic::AtomicU64,
}

/// How long a visit stays open after its last WebSocket closed.
const VISIT_GRACE: Duration = Duration::from_secs(5);

/// The notebook proxy's state: the app's, and the proxy's own pool and cache beside it
/// (the app's state holds no feature's internals). Derefs to the app's state.
#[derive(Clone)]
pub struct Notebooks {
    app: AppState,
    proxy: Arc<Proxy>,
}

impl Notebooks {
    pub fn new(app: AppState) -> Self {
        Self { app, proxy: Arc::default() }
    }
}

impl std::ops::Deref for Notebooks {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.app
    }
}

#[derive(Default)]
struct Cache {
    routes: HashMap<Uuid, Entry<Route>>,
    /// Cookie hash -> (session, user), for cookies known valid.
    cookies: HashMap<Vec<u8>, Entry<(Uuid, Visitor)>>,
    /// When each session's activity was last noted.
    activity: HashMap<Uuid, Instant>,
    /// Sessions whose noted activity is not written yet.
    unwritten: Vec<Uuid>,
}

/// An answer of Postgres, and when it was confirmed and last asked for again.
struct Entry<T> {
    value: T,
    confirmed: Instant,
    tried: Instant,
}

impl<T> Entry<T> {
    fn new(value: T) -> Self {
        let now = Instant::now();
        Self { value, confirmed: now, tried: now }
    }
}

/// What the cache holds for a key at `now`.
#[derive(Debug, PartialEq)]
enum Look<T> {
    /// Use it.
    Fresh(T),
    /// Use it, and read it again in the background (the caller's turn to).
    Stale(T),
    /// Ask Postgres.
    Missing,
}

/// Looks `key` up at `now`: fresh within `CACHE_TTL` of its confirmation, stale (once per
/// `RETRY_EVERY`; fresh in between, while someone reads it again) up to `STALE_LIMIT`,
/// then forgotten.
fn look<K: std::hash::Hash + Eq, T: Clone>(map: &mut HashMap<K, Entry<T>>, key: &K, now: Instant) -> Look<T> {
    let Some(entry) = map.get_mut(key) else { return Look::Missing };
    let age = now.saturating_duration_since(entry.confirmed);
    if age >= STALE_LIMIT {
        map.remove(key);
        return Look::Missing;
    }
    if age < CACHE_TTL || now.saturating_duration_since(entry.tried) < RETRY_EVERY {
        return Look::Fresh(entry.value.clone());
    }
    entry.tried = now;
    Look::Stale(entry.value.clone())
}

#[derive(Clone)]
struct Route {
    endpoint: String,
    /// What the pooled client's URIs carry for it (see `upstream::authority`), made once.
    authority: String,
    /// Jupyter's token, added to every request to a notebook; `None` for a web app (daas
    /// adds no token to what it forwards there).
    authorization: Option<HeaderValue>,
}

impl Default for Proxy {
    fn default() -> Self {
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(Connector);
        Self { client, cache: Mutex::new(Cache::default()), visits: Mutex::default() }
    }
}

impl Proxy {
    /// Forgets what is cached of a session (its state, members or control changed).
    pub fn invalidate(&self, id: Uuid) {
        let mut cache = self.cache.lock().expect("cache lock");
        cache.routes.remove(&id);
        cache.cookies.retain(|_, entry| entry.value.0 != id);
    }
}

impl Notebooks {
    /// The proxy's tasks, for the life of the process (`crate::background` starts them):
    /// one drops every cache entry of a session when it has an event, one writes noted
    /// activity, one reads Jupyter's record of work once a minute.
    pub fn start(&self) -> [tokio::task::JoinHandle<()>; 3] {
        let reader = self.clone();
        let reading = tokio::spawn(async move {
            let mut every = tokio::time::interval(JUPYTER_READ_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                reader.read_jupyter().await;
            }
        });
        let writer = self.clone();
        let writing = tokio::spawn(async move {
            let mut every = tokio::time::interval(ACTIVITY_WRITE_EVERY);
            for tick in 0u64.. {
                every.tick().await;
                write_activity(&writer).await;
                if tick % 60 == 0 {
                    let mut cache = writer.proxy.cache.lock().expect("cache lock");
                    cache.routes.retain(|_, e| e.confirmed.elapsed() < STALE_LIMIT);
                    cache.cookies.retain(|_, e| e.confirmed.elapsed() < STALE_LIMIT);
                }
            }
        });
        let mut notes = self.events.subscribe();
        let proxy = self.proxy.clone();
        let forgetting = tokio::spawn(async move {
            loop {
                match notes.recv().await {
                    Ok(EVERYONE) => *proxy.cache.lock().expect("cache lock") = Cache::default(),
                    Ok(id) => proxy.invalidate(id),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        *proxy.cache.lock().expect("cache lock") = Cache::default();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        [writing, forgetting, reading]
    }

    /// Reads when each running notebook's kernels and terminals last worked
    /// (`jupyter::last_work`; 8 notebooks at a time, each within `JUPYTER_READ_TIMEOUT`) and
    /// moves their sessions' activity forward to it, in one statement. A notebook that does
    /// not answer is left as it was (its activity does not move).
    pub async fn read_jupyter(&self) {
        use futures_util::StreamExt as _;
        let ids = match db::running_notebooks(&self.db).await {
            Ok(ids) => ids,
            Err(err) => return tracing::warn!(error = %err, "cannot list the running notebooks"),
        };
        let read = |id: Uuid| async move {
            let work = tokio::time::timeout(JUPYTER_READ_TIMEOUT, self.last_work(id)).await;
            match work {
                Ok(Ok(work)) => work.map(|at| (id, at)),
                Ok(Err(err)) => {
                    tracing::debug!(session.id = %id, error = %err, "cannot read the notebook's kernels");
                    None
                }
                Err(_) => None,
            }
        };
        let seen: Vec<(Uuid, time::OffsetDateTime)> = futures_util::stream::iter(ids)
            .map(read)
            .buffer_unordered(8)
            .filter_map(std::future::ready)
            .collect()
            .await;
        if seen.is_empty() {
            return;
        }
        if let Err(err) = db::note_work(&self.db, &seen).await {
            tracing::warn!(error = %err, sessions = seen.len(), "cannot record the notebooks' work");
        }
    }

    async fn last_work(&self, id: Uuid) -> anyhow::Result<Option<time::OffsetDateTime>> {
        let Some(route) = route(self, id).await? else { return Ok(None) };
        let Some(token) = &route.authorization else { return Ok(None) };
        let base = crate::sessions::lifecycle::launch::base_url(id);
        let client = &self.proxy.client;
        let kernels: Vec<jupyter::Kernel> =
            jupyter::get(client, &route.authority, token, &format!("{base}api/kernels")).await?;
        let terminals: Vec<jupyter::Terminal> =
            jupyter::get(client, &route.authority, token, &format!("{base}api/terminals")).await?;
        Ok(jupyter::last_work(&kernels, &terminals, time::OffsetDateTime::now_utc()))
    }
}

/// The portal's side: `/sessions/{id}/open` sends a member to the notebook's (or web app's)
/// origin.
pub fn routes() -> Router<AppState> {
    Router::new().route("/sessions/{id}/open", get(open_notebook))
}

/// The origin of a session, e.g. `http://{id}.sessions.localhost:8080`.
pub fn session_origin(state: &AppState, id: Uuid) -> String {
    format!("{}://{id}.{}", state.config.web.public_url.scheme(), state.config.web.sessions_domain)
}

/// Whether a member with `role` may open a notebook or web app (`kind`): not a guest into a
/// notebook (Jupyter has no read-only mode); anyone into a web app, where the proxy lets a
/// guest through only what changes nothing.
pub fn may_open(kind: &str, role: Option<&str>) -> bool {
    match role {
        Some("owner" | "user" | "support") => true,
        Some("guest") => kind == "webapp",
        _ => false,
    }
}

/// Issues a one-time ticket and redirects to the session's origin, which takes it.
/// Guests may not enter a notebook (Jupyter has no read-only mode); they may look at a web
/// app, where the proxy lets through only what does not change it.
async fn open_notebook(state: AppState, PageUser { user, .. }: PageUser, Path(id): Path<Uuid>) -> PageResult {
    let session = crate::sessions::db::find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?;
    if session.kind != "notebook" && session.kind != "webapp" {
        return Err(AppError::NotFound.into());
    }
    if session.state != SessionState::Running {
        return Err(AppError::Conflict(format!("the {} is not running", session.kind)).into());
    }
    if !may_open(&session.kind, session.role.as_deref()) {
        return Err(AppError::Forbidden("only the session's owner and its users may open the notebook".into()).into());
    }
    let ticket = Alphanumeric.sample_string(&mut rand::rng(), 43);
    db::create_ticket(&state.db, &hash(&ticket), id, user.id, TICKET_TTL_S).await?;
    Ok(redirect(&format!("{}/_daas/enter?ticket={ticket}", session_origin(&state, id))))
}

fn redirect(target: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(target) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// The session a request's `Host` names, if it is a session origin.
fn session_of_host(state: &AppState, request: &Request) -> Option<Option<Uuid>> {
    let host = request.headers().get(HOST).and_then(|h| h.to_str().ok()).or_else(|| request.uri().host())?;
    let label = host.strip_suffix(state.config.web.sessions_domain.as_str())?.strip_suffix('.')?;
    Some(label.parse().ok())
}

/// The outermost layer: requests for a session origin go to the notebook proxy and never
/// reach the portal (nor its cookie check); everything else goes on to the portal.
pub async fn by_host(state: axum::extract::State<Notebooks>, request: Request, next: Next) -> Response {
    match session_of_host(&state, &request) {
        None => next.run(request).await,
        Some(None) => StatusCode::NOT_FOUND.into_response(),
        Some(Some(id)) => serve(state.0, id, request).await.unwrap_or_else(|e| e.into_response()),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [("content-type", "text/plain; charset=utf-8")], text).into_response()
}

/// A page for a person who reached a session's origin without a way in (the session ended,
/// is not theirs, or the link expired): what happened, and the way back to daas.
fn notice(state: &Notebooks, id: Uuid, status: StatusCode, text: &'static str) -> Response {
    let portal = state.config.web.public_url.as_str().trim_end_matches('/');
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>daas: {text}</title></head>\
         <body><main><h1>{text}</h1><p><a href=\"{portal}/sessions/{id}\">Back to the session in daas</a> \
         · <a href=\"{portal}/sessions\">My sessions</a></p></main></body></html>\n"
    );
    (status, [("content-type", "text/html; charset=utf-8")], html).into_response()
}

fn cookie_of(request: &Request) -> Option<&str> {
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

/// One request on a session origin.
async fn serve(state: Notebooks, id: Uuid, mut request: Request) -> Result<Response, AppError> {
    if (is_unsafe(request.method()) || is_upgrade(&request)) && !from_session_origin(&state, id, &request) {
        // No secrets here: the method and where the browser says the request comes from.
        tracing::debug!(
            session.id = %id,
            http.method = %request.method(),
            origin = ?request.headers().get(ORIGIN),
            sec_fetch_site = ?request.headers().get("sec-fetch-site"),
            "cross-origin request to a session origin refused"
        );
        return Ok(plain(StatusCode::FORBIDDEN, "This request comes from another site."));
    }
    if request.uri().path() == "/_daas/enter" {
        let query = request.uri().query().unwrap_or("").to_owned();
        return enter(&state, id, &query).await;
    }
    let Some(cookie) = cookie_of(&request) else {
        return Ok(notice(&state, id, StatusCode::UNAUTHORIZED, "Open this notebook from daas."));
    };
    let visitor = match check_cookie(&state, id, cookie).await? {
        Some(visitor) => visitor,
        None => {
            return Ok(notice(
                &state,
                id,
                StatusCode::UNAUTHORIZED,
                "This link has expired: open the notebook from daas again.",
            ))
        }
    };
    let route = match route(&state, id).await? {
        Some(route) => route,
        None => return Ok(notice(&state, id, StatusCode::NOT_FOUND, "This notebook is not running (any more).")),
    };
    // A guest may look at a web app, never change it; nor enter a notebook at all
    // (Jupyter has no read-only mode).
    if visitor.role == "guest" {
        if route.authorization.is_some() {
            return Ok(notice(&state, id, StatusCode::FORBIDDEN, "Guests cannot open notebooks."));
        }
        if is_unsafe(request.method()) || is_upgrade(&request) {
            return Ok(plain(StatusCode::FORBIDDEN, "You are watching: only members who may control change this."));
        }
    }
    if jupyter::is_user_action(&request) {
        touch(&state, id);
    }
    tracing::debug!(session.id = %id, user.id = %visitor.user_id, "notebook request");

    // What Jupyter sees: daas's token, who is asking (its identity provider reads it; what
    // the browser sent under those names is dropped), none of daas's cookies.
    let headers = request.headers_mut();
    match &route.authorization {
        Some(token) => headers.insert(AUTHORIZATION, token.clone()),
        None => headers.remove(AUTHORIZATION),
    };
    headers.insert(USER_HEADER, HeaderValue::from_str(&visitor.username).map_err(anyhow::Error::from)?);
    let name = percent_encoding::utf8_percent_encode(&visitor.display_name, percent_encoding::NON_ALPHANUMERIC);
    headers.insert(NAME_HEADER, HeaderValue::from_str(&name.to_string()).map_err(anyhow::Error::from)?);
    headers.insert(ROLE_HEADER, HeaderValue::from_str(&visitor.role).map_err(anyhow::Error::from)?);
    let portal = state.config.web.public_url.origin().ascii_serialization();
    headers.insert(PORTAL_HEADER, HeaderValue::from_str(&portal).map_err(anyhow::Error::from)?);
    let cookies: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.starts_with(&format!("{COOKIE_NAME}=")) && !pair.starts_with("daas_session="))
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE);
    if !cookies.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&cookies.join("; ")) {
            headers.insert(COOKIE, value);
        }
    }
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    *request.uri_mut() = Uri::try_from(format!("http://{}{path}", route.authority))
        .map_err(|_| AppError::invalid("path", "not a valid path"))?;

    if is_upgrade(&request) {
        return websocket(state, id, visitor, &route.endpoint, request).await;
    }
    match send(&state.proxy.client, request).await {
        Ok(response) => Ok(response.map(Body::new)),
        Err(err) => {
            tracing::debug!(error = %err, "notebook did not answer");
            Ok(plain(StatusCode::BAD_GATEWAY, "The notebook does not answer."))
        }
    }
}

/// Sends a request through the pool. A bodiless GET or HEAD that fails (most often a pooled
/// connection Jupyter closed while it sat idle, or a server still binding its port) is sent
/// once more on a fresh try, as nginx's `proxy_next_upstream` would: replaying it is safe.
async fn send(
    client: &Client<Connector, Body>,
    request: Request,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
    let replay =
        (matches!(*request.method(), Method::GET | Method::HEAD) && request.body().is_end_stream()).then(|| {
            let mut copy = Request::new(Body::empty());
            *copy.method_mut() = request.method().clone();
            *copy.uri_mut() = request.uri().clone();
            *copy.headers_mut() = request.headers().clone();
            copy
        });
    match (client.request(request).await, replay) {
        (Err(err), Some(replay)) => {
            tracing::debug!(error = %err, "notebook request failed, sending it once more");
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.request(replay).await
        }
        (answer, _) => answer,
    }
}

/// Whether a request comes from a page of this session's own origin. daas adds Jupyter's
/// token to every request, and a token switches off Jupyter's own XSRF and `Origin` checks,
/// so daas does them: all session origins are one site, and without this check a page on
/// one user's notebook would drive another's (with a `SameSite` cookie sent along).
fn from_session_origin(state: &AppState, id: Uuid, request: &Request) -> bool {
    url::Url::parse(&session_origin(state, id)).is_ok_and(|own| from_origin(request.headers(), &own.origin()))
}

fn is_upgrade(request: &Request) -> bool {
    request.headers().get(UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && request
            .headers()
            .get(CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
}

/// Exchanges a ticket for this origin's cookie, then shows JupyterLab (through a page of
/// this origin, see below).
async fn enter(state: &AppState, id: Uuid, query: &str) -> Result<Response, AppError> {
    let ticket = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "ticket")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let mut tx = state.db.begin().await?;
    // Single use: the row is deleted whether or not it still holds.
    let taken = db::take_ticket(&mut tx, &hash(&ticket)).await?;
    let Some((session, user, true)) = taken.filter(|(session, _, _)| *session == id) else {
        tx.commit().await?;
        return Ok(plain(
            StatusCode::FORBIDDEN,
            "This link is not valid (any more): open the notebook from daas again.",
        ));
    };
    let value = Alphanumeric.sample_string(&mut rand::rng(), 43);
    db::create_cookie(&mut tx, &hash(&value), session, user, COOKIE_TTL_H).await?;
    let webapp = db::kind_of(&mut *tx, session).await?.as_deref() == Some("webapp");
    tx.commit().await?;
    let secure = if state.config.secure_cookies() { "; Secure" } else { "" };
    // `Strict`: no other site makes the browser send it. (Other session origins are this
    // one's site: the Origin check in `serve` keeps their pages out.) The browser came
    // here by a redirect from the portal, which may be another site, and a redirect that
    // continues such a chain does not carry a `Strict` cookie; so a page of this origin
    // moves on to the lab, as a navigation of its own.
    let cookie =
        format!("{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", COOKIE_TTL_H * 3600);
    // JupyterLab, or the web app's own page.
    let lab = if webapp { format!("/sessions/{id}/") } else { format!("/sessions/{id}/lab") };
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0; url={lab}\"><title>Opening the notebook</title></head>\
         <body><p><a href=\"{lab}\">Open the notebook</a></p></body></html>\n"
    );
    let mut response = page.into_response();
    let headers = response.headers_mut();
    headers.insert(SET_COOKIE, HeaderValue::from_str(&cookie).map_err(anyhow::Error::from)?);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The address holds the (spent) ticket: no page it leads to learns it.
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(response)
}

/// The user a session origin's cookie belongs to, when it is valid for this session
/// (whatever cookie name it came under, one issued for another session is refused) and
/// the user is still a member.
async fn check_cookie(state: &Notebooks, id: Uuid, cookie: &str) -> Result<Option<Visitor>, AppError> {
    let key = hash(cookie);
    let cached = look(&mut state.proxy.cache.lock().expect("cache lock").cookies, &key, Instant::now());
    match cached {
        Look::Fresh((session, visitor)) => Ok((session == id).then_some(visitor)),
        Look::Stale((session, visitor)) => {
            let state = state.clone();
            read_again(id, async move { load_cookie(&state, key, id).await });
            Ok((session == id).then_some(visitor))
        }
        Look::Missing => load_cookie(state, key, id).await,
    }
}

/// Reads a stale cache entry of session `id` again in the background (`load` puts it in the
/// cache); while Postgres does not answer, the entry goes on being served.
fn read_again<T>(id: Uuid, load: impl std::future::Future<Output = Result<T, AppError>> + Send + 'static) {
    tokio::spawn(async move {
        if let Err(err) = load.await {
            tracing::debug!(session.id = %id, error = %err, "a cached entry is served unconfirmed");
        }
    });
}

/// Reads a cookie's user from Postgres into the cache.
async fn load_cookie(state: &Notebooks, key: Vec<u8>, id: Uuid) -> Result<Option<Visitor>, AppError> {
    let found = db::cookie_user(&state.db, &key, id).await?;
    let mut cache = state.proxy.cache.lock().expect("cache lock");
    match &found {
        Some(visitor) => {
            cache.cookies.insert(key, Entry::new((id, visitor.clone())));
        }
        None => {
            cache.cookies.remove(&key);
        }
    }
    Ok(found)
}

/// Where a running notebook is reached, from the cache or Postgres.
async fn route(state: &Notebooks, id: Uuid) -> Result<Option<Route>, AppError> {
    let cached = look(&mut state.proxy.cache.lock().expect("cache lock").routes, &id, Instant::now());
    match cached {
        Look::Fresh(route) => Ok(Some(route)),
        Look::Stale(route) => {
            let state = state.clone();
            read_again(id, async move { load_route(&state, id).await });
            Ok(Some(route))
        }
        Look::Missing => load_route(state, id).await,
    }
}

/// Reads where a running notebook is reached from Postgres into the cache.
async fn load_route(state: &Notebooks, id: Uuid) -> Result<Option<Route>, AppError> {
    let row = db::route(&state.db, id).await?;
    let Some((kind, endpoint, secret)) = row else {
        state.proxy.cache.lock().expect("cache lock").routes.remove(&id);
        return Ok(None);
    };
    let authorization = if kind == "notebook" {
        let mut value = HeaderValue::from_str(&format!("token {secret}"))
            .map_err(|_| anyhow::anyhow!("a session secret that is not a header"))?;
        value.set_sensitive(true);
        Some(value)
    } else {
        None
    };
    let route = Route { authority: upstream::authority(&endpoint), endpoint, authorization };
    state.proxy.cache.lock().expect("cache lock").routes.insert(id, Entry::new(route.clone()));
    Ok(Some(route))
}

/// Notes activity (requests, kernel messages), at most once per `ACTIVITY_EVERY` per
/// session, for the next `write_activity`.
fn touch(state: &Notebooks, id: Uuid) {
    let mut cache = state.proxy.cache.lock().expect("cache lock");
    if cache.activity.get(&id).is_some_and(|at| at.elapsed() < ACTIVITY_EVERY) {
        return;
    }
    cache.activity.insert(id, Instant::now());
    cache.unwritten.push(id);
}

/// Writes the noted activity of every session in one statement.
async fn write_activity(state: &Notebooks) {
    let ids = {
        let mut cache = state.proxy.cache.lock().expect("cache lock");
        cache.activity.retain(|_, at| at.elapsed() < ACTIVITY_EVERY);
        std::mem::take(&mut cache.unwritten)
    };
    if ids.is_empty() {
        return;
    }
    if let Err(err) = db::touch(&state.db, &ids).await {
        tracing::warn!(error = %err, sessions = ids.len(), "cannot record activity");
    }
}

/// A WebSocket (Jupyter's kernel channels): the upgrade goes to Jupyter; once both sides
/// switched protocols, bytes are copied both ways until either side or the session ends.
async fn websocket(
    state: Notebooks,
    id: Uuid,
    visitor: Visitor,
    endpoint: &str,
    mut request: Request,
) -> Result<Response, AppError> {
    let client_upgrade = hyper::upgrade::on(&mut request);
    let from = crate::audit::remote_addr(request.extensions());
    let (parts, _) = request.into_parts();
    let mut upstream_request = hyper::Request::from_parts(parts, Body::empty());
    *upstream_request.uri_mut() =
        upstream_request.uri().path_and_query().map_or("/", |p| p.as_str()).parse().map_err(anyhow::Error::from)?;
    // A connection of its own (not from the pool): it becomes the WebSocket.
    let bad_gateway = || plain(StatusCode::BAD_GATEWAY, "The notebook does not answer.");
    let Ok(stream) = upstream::connect(endpoint).await else { return Ok(bad_gateway()) };
    let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
        return Ok(bad_gateway());
    };
    tokio::spawn(connection.with_upgrades());
    let mut upstream = match sender.send_request(upstream_request).await {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!(error = %err, "notebook refused the WebSocket");
            return Ok(bad_gateway());
        }
    };
    if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(upstream.map(Body::new));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut upstream);
    let mut response = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in upstream.headers() {
        response = response.header(name, value);
    }
    tokio::spawn(async move {
        let (Ok(client), Ok(server)) = (client_upgrade.await, upstream_upgrade.await) else { return };
        let carried = open_visit(&state, id, &visitor, from).await;
        // Not activity: kernels at work are read from Jupyter (`read_jupyter`). Both
        // directions in one future: no task pair, no split's lock on each read and write.
        let mut client = Counting { inner: TokioIo::new(client), carried };
        let mut server = TokioIo::new(server);
        let copy = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, COPY_BUFFER, COPY_BUFFER);
        // Ends when the session stops or the visitor may no longer be in it (removed,
        // made a guest, disabled): at once, not at their next request.
        let mut notes = state.events.subscribe();
        let user = visitor.user_id;
        let sent_away = async {
            loop {
                match notes.recv().await {
                    Ok(session) if session != id && session != EVERYONE => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                    _ => {}
                }
                match db::may_stay(&state.db, id, user).await {
                    Ok(false) => return,
                    Ok(true) => {}
                    Err(err) => tracing::warn!(error = %err, "cannot check the notebook's visitor again"),
                }
            }
        };
        // At shutdown too: the browser reconnects to the next daas.
        tokio::select! {
            _ = copy => {}
            _ = sent_away => {}
            _ = state.events.closed() => {}
        }
        close_visit(&state, id, user);
    });
    Ok(response.body(Body::empty()).map_err(anyhow::Error::from)?)
}

/// Each direction's buffer of a WebSocket's copy: Jupyter's messages are mostly small, and
/// a larger read gains nothing once a message fits.
const COPY_BUFFER: usize = 16 << 10;

/// The browser's side of a WebSocket, counting its bytes into the visit: what is read came
/// from the browser, what is written goes to it.
struct Counting<S> {
    inner: S,
    carried: Arc<Carried>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counting<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.carried.to_session.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        poll
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = poll {
            self.carried.to_browser.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A WebSocket of `visitor` opens: the first of their visit writes its remote-access
/// record. The counters its bytes go to.
async fn open_visit(state: &Notebooks, id: Uuid, visitor: &Visitor, from: Option<String>) -> Arc<Carried> {
    let key = (id, visitor.user_id);
    let (first, carried) = {
        let mut visits = state.proxy.visits.lock().expect("visits lock");
        let visit = visits.entry(key).or_default();
        visit.open += 1;
        (visit.open == 1 && visit.record.is_none(), visit.bytes.clone())
    };
    if first {
        let (user, role) = ((visitor.user_id, visitor.username.as_str()), visitor.role.as_str());
        match access::connect(&state.db, id, user, role, "notebook", from.as_deref()).await {
            Ok(record) => {
                let mut visits = state.proxy.visits.lock().expect("visits lock");
                match visits.get_mut(&key) {
                    Some(visit) => visit.record = Some(record),
                    // Over already (its sockets closed while the record was written).
                    None => end_visit(state, record, &carried),
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot record the notebook visit"),
        }
    }
    carried
}

/// A WebSocket of the visit closed; the visit ends `VISIT_GRACE` after its last one.
fn close_visit(state: &Notebooks, id: Uuid, user: Uuid) {
    let key = (id, user);
    {
        let mut visits = state.proxy.visits.lock().expect("visits lock");
        let Some(visit) = visits.get_mut(&key) else { return };
        visit.open = visit.open.saturating_sub(1);
        if visit.open > 0 {
            return;
        }
    }
    let state = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(VISIT_GRACE).await;
        let ended = {
            let mut visits = state.proxy.visits.lock().expect("visits lock");
            match visits.get(&key) {
                Some(visit) if visit.open == 0 => visits.remove(&key),
                _ => None,
            }
        };
        if let Some(Visit { record: Some(record), bytes, .. }) = ended {
            end_visit(&state, record, &bytes);
        }
    });
}

/// Closes a visit's remote-access record with the bytes it carried.
fn end_visit(state: &Notebooks, record: i64, carried: &Carried) {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let (up, down) = (load(&carried.to_session), load(&carried.to_browser));
    let db = state.db.clone();
    tokio::spawn(async move {
        if let Err(err) = access::disconnect(&db, record, up, down).await {
            tracing::warn!(error = %err, "cannot record the end of a notebook visit");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_answer_is_fresh_then_served_stale_while_read_again_then_forgotten() {
        let mut map = HashMap::new();
        let start = Instant::now();
        map.insert(1, Entry { value: "route", confirmed: start, tried: start });
        assert_eq!(look(&mut map, &1, start + CACHE_TTL / 2), Look::Fresh("route"));
        // Stale: one caller reads it again; the others are served meanwhile without asking.
        let late = start + CACHE_TTL + Duration::from_secs(1);
        assert_eq!(look(&mut map, &1, late), Look::Stale("route"));
        assert_eq!(look(&mut map, &1, late + RETRY_EVERY / 2), Look::Fresh("route"));
        // Postgres still does not answer: asked again every RETRY_EVERY, served all along.
        assert_eq!(look(&mut map, &1, late + RETRY_EVERY), Look::Stale("route"));
        assert_eq!(look(&mut map, &1, start + STALE_LIMIT - Duration::from_secs(1)), Look::Stale("route"));
        // Unconfirmed for STALE_LIMIT: never served again.
        assert_eq!(look(&mut map, &1, start + STALE_LIMIT), Look::Missing);
        assert!(map.is_empty());
        assert_eq!(look(&mut map, &2, start), Look::<&str>::Missing);
    }
}
