//! The shared state every handler sees.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;

#[derive(Clone)]
pub struct AppState(pub Arc<App>);

pub struct App {
    /// The database: every state change goes through it, in a transaction.
    pub db: PgPool,
    /// Renders the Prometheus text format for `/metrics`.
    pub metrics: PrometheusHandle,
    /// Settings handlers read.
    pub config: Config,
    /// The OpenID Connect client, when an issuer is configured.
    pub oidc: Option<crate::auth::oidc::Oidc>,
    /// The engine that runs sessions.
    pub runtime: Arc<dyn crate::runtime::Runtime>,
    /// The lifecycle's wake-up of the reconciler, the launches under way here, and their queue.
    pub lifecycle: crate::sessions::lifecycle::signals::Signals,
    /// Fans out Postgres notifications of new session events to the event streams.
    pub events: crate::sessions::events::Hub,
}

/// The settings of a running server that handlers need.
#[derive(Clone, Debug)]
pub struct Config {
    /// Datasets live below this folder.
    pub data_root: std::path::PathBuf,
    /// Each experiment's folder below `data_root`; its datasets must lie in it.
    pub experiment_storage: crate::datasets::storage::StorageTemplate,
    /// Serve `/metrics` on the main listener (false when it has a listener of its own).
    pub metrics_on_main: bool,
    /// Login, cookies, the public URL.
    pub web: crate::config::WebArgs,
    /// Session lifetimes, idle limits and the reconciler's pace.
    pub sessions: SessionPolicy,
}

impl Config {
    pub fn from_args(args: &crate::config::ServeArgs) -> Self {
        Self {
            data_root: args.data_root.clone(),
            experiment_storage: args.experiment_storage.clone(),
            metrics_on_main: args.metrics_listen.is_none(),
            web: args.web.clone(),
            sessions: SessionPolicy::from_args(&args.sessions),
        }
    }

    /// Whether cookies must be `Secure` (daas is reached over HTTPS).
    pub fn secure_cookies(&self) -> bool {
        self.web.public_url.scheme() == "https"
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::from_args(&crate::config::ServeArgs::defaults())
    }
}

/// Limits on how long sessions live, and how often the reconciler looks.
#[derive(Clone, Debug)]
pub struct SessionPolicy {
    /// Lifetime when the role's quota sets none.
    pub lifetime: Duration,
    /// Idle limit when the role's quota sets none (desktops and notebooks).
    pub idle_limit: Duration,
    /// What a user may add to their own session's lifetime when their quota sets no limit.
    pub extension_limit: Duration,
    /// Warn this long before a session is stopped for expiry or idleness.
    pub warning: Duration,
    /// Fail a session that does not answer within this long.
    pub startup_timeout: Duration,
    /// The reconciler's period.
    pub reconcile_interval: Duration,
    /// Starts under way at once.
    pub max_starting: usize,
    /// The host uids sessions run as, one per user.
    pub uids: crate::config::UidRange,
}

impl SessionPolicy {
    pub fn from_args(args: &crate::config::SessionArgs) -> Self {
        Self {
            lifetime: args.session_lifetime,
            idle_limit: args.session_idle_limit,
            extension_limit: args.session_extension_limit,
            warning: args.expiry_warning,
            startup_timeout: args.startup_timeout,
            reconcile_interval: args.reconcile_interval,
            max_starting: args.max_starting.unwrap_or_else(|| {
                2 * std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(1)
            }),
            uids: args.session_uids,
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    pub fn new(db: PgPool, config: Config, runtime: Arc<dyn crate::runtime::Runtime>) -> Self {
        let oidc = crate::auth::oidc::Oidc::from_config(&config.web);
        let lifecycle = crate::sessions::lifecycle::signals::Signals::new(config.sessions.max_starting);
        Self(Arc::new(App {
            oidc,
            events: crate::sessions::events::Hub::new(db.clone()),
            db,
            metrics: crate::telemetry::metrics_handle(),
            config,
            runtime,
            lifecycle,
        }))
    }
}

/// Handlers take `state: AppState` directly rather than `State(state): State<AppState>`.
impl axum::extract::FromRequestParts<AppState> for AppState {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(_: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(state.clone())
    }
}
