//! `TestApp`: the app over a fresh database with the demo data, on the fake runtime (or,
//! for what only real processes prove, the local one), and request helpers.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use daas::background::Reconciler;
use daas::runtime::fake::FakeRuntime;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

pub struct TestApp {
    pub db: PgPool,
    router: Router,
    pub state: daas::AppState,
    /// The data root (datasets live below it).
    pub data: tempfile::TempDir,
    /// The fake runtime, when the app runs on it (`new`), for the test to script.
    fake: Option<Arc<FakeRuntime>>,
    /// The reconciler, once started.
    reconciler: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The socket `serve` listens on, when it had to be known before the app was built.
    listener: std::sync::Mutex<Option<std::net::TcpListener>>,
    _background: daas::background::Background,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
    /// The body as it came (for answers that are not text).
    pub bytes: Vec<u8>,
}

/// Which runtime a test app runs sessions on.
enum Engine {
    /// Nothing runs; the test scripts what the runtime sees (`TestApp::fake`).
    Fake,
    /// Real sandboxed processes (`sessions::test_runtime`).
    Local,
    /// Batch jobs on a test cluster (`cluster::Cluster`) whose `slurm.conf` this is.
    Slurm(std::path::PathBuf),
}

impl TestApp {
    /// The demo facility (alice, bob, carol, dave, sam the BL11 scientist, admin) on the
    /// fake runtime.
    pub async fn new(db: PgPool) -> Self {
        Self::build(db, |_| {}, Engine::Fake).await
    }

    /// `new` with settings changed by `change`.
    pub async fn with_config(db: PgPool, change: impl FnOnce(&mut daas::state::Config)) -> Self {
        Self::build(db, change, Engine::Fake).await
    }

    /// The demo facility on the local runtime: for what only real processes prove.
    pub async fn local(db: PgPool) -> Self {
        Self::build(db, |_| {}, Engine::Local).await
    }

    /// The demo facility on the Slurm runtime, submitting to the test cluster `cluster`,
    /// with settings changed by `change`, served on the address its nodes report to (`serve`
    /// serves it on another too).
    pub async fn slurm(
        db: PgPool,
        cluster: &crate::cluster::Cluster,
        change: impl FnOnce(&mut daas::state::Config),
    ) -> Self {
        let app = Self::build(db, change, Engine::Slurm(cluster.conf.clone())).await;
        // On the socket its nodes report to.
        app.serve().await;
        app
    }

    async fn build(db: PgPool, change: impl FnOnce(&mut daas::state::Config), engine: Engine) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut config = daas::state::Config { data_root: data.path().to_owned(), ..Default::default() };
        config.web.local_login = true;
        // The workspace's frontend/, wherever the test runs from.
        config.web.frontend_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../frontend");
        // A quick reconciler (for the tests that start it) and room for a loaded machine.
        config.sessions.reconcile_interval = std::time::Duration::from_millis(300);
        config.sessions.startup_timeout = std::time::Duration::from_secs(90);
        change(&mut config);
        daas::demo::load_into(&db, data.path(), &config.experiment_storage).await.unwrap().expect("an empty database");
        let mut listener = None;
        let (runtime, fake): (Arc<dyn daas::runtime::Runtime>, _) = match engine {
            Engine::Fake => {
                let fake = Arc::new(FakeRuntime::default());
                (fake.clone(), Some(fake))
            }
            Engine::Local => (test_runtime(data.path()), None),
            Engine::Slurm(conf) => {
                // The Slurm commands daas runs read it (each test is a process of its own).
                std::env::set_var("SLURM_CONF", conf);
                let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let callback_url = format!("http://{}/", socket.local_addr().unwrap()).parse().unwrap();
                listener = Some(socket);
                (slurm_runtime(data.path(), callback_url, config.sessions.warning), None)
            }
        };
        let state = daas::AppState::new(db.clone(), config, runtime);
        let background = daas::background::start(&state, Reconciler::Leave);
        let router = daas::app(state.clone(), &background);
        Self {
            db,
            router,
            state,
            data,
            fake,
            reconciler: Default::default(),
            listener: std::sync::Mutex::new(listener),
            _background: background,
        }
    }

    /// The notebook proxy's state (to drive its background work by hand).
    pub fn notebooks(&self) -> &daas::proxy::notebook::Notebooks {
        &self._background.notebooks
    }

    /// The fake runtime this app runs on (a test on the local runtime has none).
    pub fn fake(&self) -> &FakeRuntime {
        self.fake.as_deref().expect("a test app on the fake runtime")
    }

    pub async fn token(&self, username: &str) -> String {
        let id = daas::auth::users::find(&self.db, username).await.unwrap();
        daas::auth::tokens::create(&self.db, id, "test", None).await.unwrap().1
    }

    /// Serves the app on a free local port (for WebSockets, which `oneshot` cannot carry);
    /// returns `host:port`.
    pub async fn serve(&self) -> String {
        let socket = self.listener.lock().unwrap().take();
        let listener = match socket {
            Some(socket) => {
                socket.set_nonblocking(true).unwrap();
                tokio::net::TcpListener::from_std(socket).unwrap()
            }
            None => tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let addr = listener.local_addr().unwrap();
        let router = self.router.clone();
        tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
        });
        addr.to_string()
    }

    pub fn data_path(&self) -> &std::path::Path {
        self.data.path()
    }

    /// Runs the reconciler for the rest of the test.
    pub fn start_reconciler(&self) {
        let mut reconciler = self.reconciler.lock().unwrap();
        if reconciler.is_none() {
            *reconciler = Some(daas::reconciler::spawn(self.state.clone()));
        }
    }

    /// Stops every session the runtime runs (tests end with nothing left running).
    pub async fn stop_everything(&self) {
        for found in self.state.runtime.list().await.unwrap() {
            self.state.runtime.stop(found.session_id, &found.handle).await.unwrap();
        }
    }

    /// Sends a request as built by the caller.
    pub async fn raw(&self, request: Request<Body>) -> Response {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Response { status, headers, body, text, bytes: bytes.to_vec() }
    }

    /// Opens a server-sent events stream (optionally resuming after `last_event_id`).
    pub async fn stream(&self, uri: &str, token: &str, last_event_id: Option<i64>) -> EventStream {
        let mut request = Request::builder().uri(uri).header("authorization", format!("Bearer {token}"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = self.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        EventStream { body: response.into_body(), buffer: String::new() }
    }

    pub async fn request(&self, method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> Response {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request.header("content-type", "application/json").body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        self.raw(request).await
    }

    /// A logged-in browser: the session cookie's value and the session's CSRF token.
    pub async fn browser(&self, username: &str) -> Browser {
        let id = daas::auth::users::find(&self.db, username).await.unwrap();
        let set_cookie = daas::auth::sessions::create(&self.db, &self.state.config, id, None, None).await.unwrap();
        let cookie = set_cookie.to_str().unwrap().split(';').next().unwrap().to_string();
        let csrf = sqlx::query_scalar(
            "select csrf_token from browser_sessions where user_id = $1 order by created_at desc limit 1",
        )
        .bind(id)
        .fetch_one(&self.db)
        .await
        .unwrap();
        Browser { cookie, csrf }
    }

    /// A request as a browser sends it: the cookie (if any), a form body (if any).
    pub async fn browse(
        &self,
        method: Method,
        uri: &str,
        cookie: Option<&str>,
        form: Option<&[(&str, &str)]>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = match form {
            Some(form) => {
                let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
                request.header("content-type", "application/x-www-form-urlencoded").body(Body::from(body))
            }
            None => request.body(Body::empty()),
        }
        .unwrap();
        self.raw(request).await
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, uri, token, None).await
    }

    /// `get` as a logged-in user (a fresh token each time).
    pub async fn get_as(&self, username: &str, uri: &str) -> Response {
        let token = self.token(username).await;
        self.get(uri, Some(&token)).await
    }
}

/// Kills whatever a test left running (it panicked before stopping its sessions): each
/// session folder's handle names its process group.
impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(reconciler) = self.reconciler.lock().unwrap().take() {
            reconciler.abort();
        }
        daas::runtime::local::kill_all(&self.data.path().join("_runtime/sessions"));
    }
}

/// The events of a server-sent events response, one JSON `data` at a time.
pub struct EventStream {
    body: Body,
    buffer: String,
}

impl EventStream {
    /// The next event's data, or `None` when the stream ends or nothing comes in time.
    pub async fn next_event(&mut self, within: std::time::Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                    return Some(serde_json::from_str(data.trim()).unwrap());
                }
                continue;
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await.ok()??.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

impl Response {
    /// Asserts the JSON error shape of DESIGN.md and returns its code.
    pub fn error_code(&self) -> &str {
        let code = self.body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error body: {}", self.text));
        assert!(self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.text);
        code
    }
}

/// The identifiers of a proposals page.
pub fn identifiers(body: &Value) -> Vec<&str> {
    body["items"].as_array().unwrap().iter().map(|p| p["identifier"].as_str().unwrap()).collect()
}

/// A logged-in browser.
pub struct Browser {
    /// `daas_session=...`, ready for a `Cookie` header.
    pub cookie: String,
    pub csrf: String,
}

// Sessions for the tests: images whose commands the test writes, launch bodies, waiting.

/// The folders of a test's sessions, in its temporary folder; the repository's venv and
/// tools.
fn test_folders(data: &Path) -> daas::runtime::local::LocalConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    daas::runtime::local::LocalConfig {
        sessions_dir: data.join("_runtime/sessions"),
        homes_dir: data.join("_runtime/homes"),
        data_root: data.to_owned(),
        // Where it really is: its scripts name its real path, which the sandbox must show
        // (a worktree's `.daas/venv` may link to another's).
        venv: root.join(".daas/venv").canonicalize().unwrap_or_else(|_| root.join(".daas/venv")),
        tools_dir: root.join("tools"),
        stop_grace: Duration::from_secs(3),
        // As on a machine without GPUs, whatever this one has.
        gpu_devices: Vec::new(),
    }
}

/// A local runtime whose folders live in the test's temporary folder.
pub fn test_runtime(data: &Path) -> Arc<dyn daas::runtime::Runtime> {
    use daas::runtime::local::{Limits, LocalRuntime};
    Arc::new(LocalRuntime::new(test_folders(data), Limits::detect()).unwrap())
}

/// A Slurm runtime whose shared folders live in the test's temporary folder, reporting to
/// `callback_url`, its nodes running this build's `daas`.
pub fn slurm_runtime(data: &Path, callback_url: url::Url, warning: Duration) -> Arc<dyn daas::runtime::Runtime> {
    use daas::runtime::slurm::{SlurmConfig, SlurmRuntime};
    let folders = test_folders(data);
    let config = SlurmConfig { folders, callback_url, daas_path: env!("CARGO_BIN_EXE_daas").into(), warning };
    Arc::new(SlurmRuntime::new(config).unwrap())
}

/// An image whose local command is `sh -c SCRIPT` (`{socket}`, `{port}` etc. expanded by
/// the runtime).
pub async fn add_shell_image(db: &PgPool, name: &str, kind: &str, script: &str) -> Uuid {
    let protocol = match kind {
        "job" => "none",
        "desktop" => "vnc",
        _ => "http",
    };
    sqlx::query_scalar(
        "insert into images (name, kind, reference, protocol, default_cpu_millis, default_memory_mib, local_command)
         values ($1, $2, $3, $4, 100, 64, $5) returning id",
    )
    .bind(name)
    .bind(kind)
    .bind(format!("example/{}:1", name.to_lowercase()))
    .bind(protocol)
    .bind(json!({"argv": ["sh", "-c", script]}))
    .fetch_one(db)
    .await
    .unwrap()
}

/// A notebook image that starts in a blink: Python's HTTP server on the session's port.
pub async fn add_trivial_image(db: &PgPool, name: &str, delay_s: u32) -> Uuid {
    let script = format!("sleep {delay_s}; exec python3 -m http.server --bind 127.0.0.1 {{port}}");
    add_shell_image(db, name, "notebook", &script).await
}

pub async fn id_of(db: &PgPool, table: &str, column: &str, value: &str) -> Uuid {
    sqlx::query_scalar(&format!("select id from {table} where {column} = $1"))
        .bind(value)
        .fetch_one(db)
        .await
        .unwrap_or_else(|_| panic!("no {table} {value}"))
}

pub async fn launch_body(app: &TestApp, image: &str, flavour: &str, experiment: &str) -> Value {
    json!({
        "image": id_of(&app.db, "images", "name", image).await,
        "flavour": id_of(&app.db, "flavours", "name", flavour).await,
        "experiment": id_of(&app.db, "experiments", "code", experiment).await,
    })
}

/// The messages of a session's events, oldest first.
pub async fn events_of(db: &PgPool, id: &str) -> Vec<String> {
    sqlx::query_scalar("select message from session_events where session_id = $1::uuid order by id")
        .bind(id)
        .fetch_all(db)
        .await
        .unwrap()
}

/// Polls the session as `user` until `done` holds; panics after `secs`.
pub async fn wait_state(app: &TestApp, token: &str, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let session = app.get(&format!("/api/v1/sessions/{id}"), Some(token)).await;
        assert_eq!(session.status, 200, "{}", session.text);
        if done(&session.body) {
            return session.body;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out; session is {}", session.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
