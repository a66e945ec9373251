//! The shared state every handler sees.

use std::sync::Arc;

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
}

/// The settings of a running server that handlers need.
#[derive(Clone, Debug)]
pub struct Config {
    /// Datasets live below this folder.
    pub data_root: std::path::PathBuf,
    /// Serve `/metrics` on the main listener (false when it has a listener of its own).
    pub metrics_on_main: bool,
    /// Login, cookies, the public URL.
    pub web: crate::config::WebArgs,
}

impl Config {
    pub fn from_args(args: &crate::config::ServeArgs) -> Self {
        Self {
            data_root: args.data_root.clone(),
            metrics_on_main: args.metrics_listen.is_none(),
            web: args.web.clone(),
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

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    pub fn new(db: PgPool, config: Config) -> Self {
        let oidc = crate::auth::oidc::Oidc::from_config(&config.web);
        Self(Arc::new(App { db, metrics: crate::telemetry::metrics_handle(), config, oidc }))
    }
}

/// Handlers take `state: AppState` directly rather than `State(state): State<AppState>`.
impl axum::extract::FromRequestParts<AppState> for AppState {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(_: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(state.clone())
    }
}
