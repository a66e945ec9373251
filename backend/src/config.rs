//! Command line and configuration: one clap tree, every flag with its `DAAS_*` variable,
//! so `daas <command> --help` is the reference.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::identity::Role;
use crate::datasets::storage::StorageTemplate;

#[derive(Parser, Debug)]
#[command(name = "daas", version, about = "Data analysis as a service for light sources", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArgs,
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, env = "DAAS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the database is.
#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// PostgreSQL connection URL. When unset, daas uses (and starts if needed) the private
    /// development cluster under --dev-dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Folder of the development cluster and other local state of `daas dev`.
    #[arg(long, env = "DAAS_DEV_DIR", default_value = ".daas", global = true)]
    pub dev_dir: PathBuf,
    /// Most connections daas opens to PostgreSQL.
    #[arg(long, env = "DAAS_DB_MAX_CONNECTIONS", default_value_t = 20, global = true)]
    pub db_max_connections: u32,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the portal and the API over HTTP.
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate,
    /// What a Slurm job of the Slurm runtime runs on its node: start the session whose
    /// folder is DIR (its `launch.json`), relay its port and report it to daas. Not for
    /// people to run.
    #[command(hide = true)]
    SlurmNode { dir: PathBuf },
    /// Zero-setup development mode: start (or reuse) the private PostgreSQL under
    /// --dev-dir, migrate, load demo data if the database is empty, and serve.
    Dev(ServeArgs),
    /// Print the URL of the development database, starting the cluster if needed
    /// (used by `make test`); `--stop` stops it instead.
    DevDb {
        /// Stop the development cluster.
        #[arg(long)]
        stop: bool,
    },
    /// Load data from the user office.
    #[command(subcommand)]
    Import(ImportCommand),
    /// API tokens for scripts.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Report stored dataset links that break the storage rule (outside their
    /// experiment's folder, missing, or leading out through a symbolic link), one line
    /// each; exits non-zero when there is any.
    Check(CheckArgs),
}

/// Where datasets live, as `daas serve` is configured.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Folder below which datasets live (dataset locations are relative to it).
    #[arg(long, env = "DAAS_DATA_ROOT", default_value = ".daas/data")]
    pub data_root: PathBuf,
    /// Each experiment's folder below the data root (see `daas serve --help`).
    #[arg(long, env = "DAAS_EXPERIMENT_STORAGE", default_value = StorageTemplate::DEFAULT)]
    pub experiment_storage: StorageTemplate,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "DAAS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve /metrics on this address instead of the main listener (keeps it off the
    /// public ingress).
    #[arg(long, env = "DAAS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Folder below which datasets live (dataset locations are relative to it).
    #[arg(long, env = "DAAS_DATA_ROOT", default_value = ".daas/data")]
    pub data_root: PathBuf,
    /// Each experiment's folder below the data root: `{beamline}` (the experiment's),
    /// `{proposal}` (the user office identifier) and `{experiment}` (its code). A dataset
    /// is linked only from inside its experiment's folder.
    #[arg(long, env = "DAAS_EXPERIMENT_STORAGE", default_value = StorageTemplate::DEFAULT)]
    pub experiment_storage: StorageTemplate,
    /// Seconds to let open requests finish after SIGTERM or Ctrl-C (event streams and
    /// relayed WebSockets end at once: clients resume or reconnect).
    #[arg(long, env = "DAAS_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
    #[command(flatten)]
    pub web: WebArgs,
    #[command(flatten)]
    pub sessions: SessionArgs,
}

/// The browser side: where daas is reached, how people log in, how long they stay.
#[derive(Args, Debug, Clone)]
pub struct WebArgs {
    /// The URL users reach daas at. OIDC redirects are built from it; `https` makes the
    /// session cookie `Secure`; WebSocket and form `Origin` headers must match it.
    #[arg(long, env = "DAAS_PUBLIC_URL", default_value = "http://localhost:8080")]
    pub public_url: url::Url,
    /// Let local accounts log in with a password (for standalone use and development;
    /// turn off in production where everyone logs in through OIDC). `daas dev` turns it on.
    #[arg(long, env = "DAAS_LOCAL_LOGIN", default_value_t = false, action = clap::ArgAction::Set)]
    pub local_login: bool,
    /// OpenID Connect issuer URL (discovery at `<issuer>/.well-known/openid-configuration`).
    #[arg(long, env = "DAAS_OIDC_ISSUER")]
    pub oidc_issuer: Option<url::Url>,
    /// OIDC client id registered for daas at the provider.
    #[arg(long, env = "DAAS_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// OIDC client secret.
    #[arg(long, env = "DAAS_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<Secret>,
    /// What the login button says: "Log in with ...".
    #[arg(long, env = "DAAS_OIDC_NAME", default_value = "your facility account")]
    pub oidc_name: String,
    /// ID token claim holding the user's groups or roles (a string or a list of strings).
    #[arg(long, env = "DAAS_OIDC_ROLE_CLAIM", default_value = "groups")]
    pub oidc_role_claim: String,
    /// Values of the role claim that make a user an admin (comma-separated).
    #[arg(long, env = "DAAS_OIDC_ADMIN_VALUES", value_delimiter = ',', default_value = "daas-admin")]
    pub oidc_admin_values: Vec<String>,
    /// Values of the role claim that make a user a beamline scientist (comma-separated).
    #[arg(long, env = "DAAS_OIDC_SCIENTIST_VALUES", value_delimiter = ',', default_value = "daas-scientist")]
    pub oidc_scientist_values: Vec<String>,
    /// ID token claim holding the user's affiliation (institute).
    #[arg(long, env = "DAAS_OIDC_AFFILIATION_CLAIM", default_value = "affiliation")]
    pub oidc_affiliation_claim: String,
    /// Minutes without a request after which a browser session ends.
    #[arg(long, env = "DAAS_SESSION_IDLE_MINUTES", default_value_t = 120)]
    pub session_idle_minutes: u32,
    /// Hours after which a browser session ends, however active.
    #[arg(long, env = "DAAS_SESSION_MAX_HOURS", default_value_t = 12)]
    pub session_max_hours: u32,
    /// Folder holding `static/` (our CSS and JS) and `node_modules/` (htmx and other
    /// packages installed by npm).
    #[arg(long, env = "DAAS_FRONTEND_DIR", default_value = "frontend")]
    pub frontend_dir: PathBuf,
    /// The domain (with the port, if not the default) under which each notebook gets an
    /// origin of its own, `{session-id}.{domain}`; it must resolve to daas (a wildcard DNS
    /// entry; `*.localhost` resolves to this machine in browsers).
    #[arg(long, env = "DAAS_SESSIONS_DOMAIN", default_value = "sessions.localhost:8080")]
    pub sessions_domain: String,
}

/// A secret from the command line or environment: never printed by `Debug`.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// Where and how sessions run.
#[derive(Args, Debug, Clone)]
pub struct SessionArgs {
    /// The engine that runs sessions: processes on this machine, pods, Slurm batch jobs, or
    /// nothing (fake).
    #[arg(long, env = "DAAS_RUNTIME", value_enum, default_value_t = RuntimeKind::Local)]
    pub runtime: RuntimeKind,
    /// Local and Slurm runtimes: one folder per running session (Slurm: shared with the nodes).
    #[arg(long, env = "DAAS_SESSIONS_DIR", default_value = ".daas/sessions")]
    pub sessions_dir: PathBuf,
    /// Local and Slurm runtimes: the users' homes, kept across sessions.
    #[arg(long, env = "DAAS_HOMES_DIR", default_value = ".daas/homes")]
    pub homes_dir: PathBuf,
    /// Local and Slurm runtimes: the Python environment with JupyterLab (`{venv}` in image commands).
    #[arg(long, env = "DAAS_VENV", default_value = ".daas/venv")]
    pub venv: PathBuf,
    /// Local and Slurm runtimes: programs shipped with daas (`{tools}` in image commands).
    #[arg(long, env = "DAAS_TOOLS_DIR", default_value = "tools")]
    pub tools_dir: PathBuf,
    /// How often the reconciler compares Postgres with what really runs.
    #[arg(long, env = "DAAS_RECONCILE_INTERVAL", value_parser = humantime::parse_duration, default_value = "5s")]
    pub reconcile_interval: std::time::Duration,
    /// Lifetime of a session when its role's quota sets none.
    #[arg(long, env = "DAAS_SESSION_LIFETIME", value_parser = humantime::parse_duration, default_value = "24h")]
    pub session_lifetime: std::time::Duration,
    /// A desktop or notebook with no activity for this long is stopped, when its role's
    /// quota sets no idle limit.
    #[arg(long, env = "DAAS_SESSION_IDLE_LIMIT", value_parser = humantime::parse_duration, default_value = "2h")]
    pub session_idle_limit: std::time::Duration,
    /// How much time in all a user may add to their own session ("Extend" on its page, or
    /// `POST /api/v1/sessions/{id}/extend`), when their role's quota sets no limit. Admins
    /// extend any session by any time.
    #[arg(long, env = "DAAS_SESSION_EXTENSION_LIMIT", value_parser = humantime::parse_duration, default_value = "24h")]
    pub session_extension_limit: std::time::Duration,
    /// How long before an expiry or idle stop the session is warned (a session event).
    #[arg(long, env = "DAAS_EXPIRY_WARNING", value_parser = humantime::parse_duration, default_value = "15m")]
    pub expiry_warning: std::time::Duration,
    /// A session not answering (on its socket, or its pod's port) within this long after
    /// its start began (not counting its wait in the queue) fails.
    #[arg(long, env = "DAAS_STARTUP_TIMEOUT", value_parser = humantime::parse_duration, default_value = "120s")]
    pub startup_timeout: std::time::Duration,
    /// Starts under way at once (from the runtime's start until the session answers);
    /// later launches wait in order and show "queued: N ahead". Default: twice the CPUs.
    #[arg(long, env = "DAAS_MAX_STARTING")]
    pub max_starting: Option<usize>,
    /// Kubernetes runtime settings (used with `--runtime kubernetes`).
    #[command(flatten)]
    pub kube: crate::runtime::kube::KubeArgs,
    /// Slurm runtime settings (used with `--runtime slurm`).
    #[command(flatten)]
    pub slurm: crate::runtime::slurm::SlurmArgs,
    /// How long a stop waits for a session's processes after SIGTERM before SIGKILL.
    #[arg(long, env = "DAAS_STOP_GRACE", value_parser = humantime::parse_duration, default_value = "5s")]
    pub stop_grace: std::time::Duration,
    /// The host uids given to portal users, `FIRST-LAST`: each user's sessions run as one
    /// of them (gid = uid), allocated at their first launch and kept in PostgreSQL. Keep
    /// the range clear of the machine's accounts and subordinate ids (`/etc/subuid`).
    #[arg(long, env = "DAAS_SESSION_UIDS", default_value = "3000000-3999999")]
    pub session_uids: UidRange,
}

/// An inclusive range of host uids, written `FIRST-LAST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UidRange {
    pub first: u32,
    pub last: u32,
}

impl std::str::FromStr for UidRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (first, last) = s.split_once('-').ok_or("expected FIRST-LAST, e.g. 3000000-3999999")?;
        let parse = |n: &str| n.trim().parse::<u32>().map_err(|e| format!("{n:?}: {e}"));
        let (first, last) = (parse(first)?, parse(last)?);
        // Below 1000 are the system's own accounts; uids must fit PostgreSQL's integer.
        if first < 1000 || last < first || last > i32::MAX as u32 {
            return Err("FIRST must be at least 1000, LAST at least FIRST and below 2^31".into());
        }
        Ok(Self { first, last })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// Processes on this machine, each in a sandbox.
    Local,
    /// Pods on a Kubernetes cluster.
    Kubernetes,
    /// Nothing runs: sessions are recorded and answer nowhere (for benchmarks of daas alone).
    Fake,
    /// Batch jobs on a Slurm cluster, each in the local runtime's sandbox on its node.
    Slurm,
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Upsert proposals, members and experiments from a user office export (JSON or CSV).
    /// Importing the same file twice changes nothing; a malformed file is rejected whole.
    Proposals {
        /// The export; `.json` or `.csv` (see README for the columns).
        file: PathBuf,
        /// Format of the file, when its extension does not say.
        #[arg(long, value_enum)]
        format: Option<ImportFormat>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    Json,
    Csv,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token for a user and print it (only this once).
    Create {
        /// The user's username.
        #[arg(long)]
        user: String,
        /// A name to recognise the token by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Lifetime, e.g. `30d`, `12h`; no expiry when unset.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a local account.
    Add {
        /// Login name: lower-case letters, digits, `.`, `_`, `-`.
        username: String,
        /// Full name shown in the portal; defaults to the username.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        affiliation: Option<String>,
        #[arg(long, value_enum, default_value_t = Role::User)]
        role: Role,
        /// Read a password from standard input (one line) so the account can log in
        /// with the local form.
        #[arg(long)]
        password: bool,
    },
    /// Change a user's role.
    SetRole { username: String, role: Role },
    /// Disable an account: its browser sessions and tokens stop working at once.
    Disable { username: String },
    /// Enable a disabled account again.
    Enable { username: String },
}

impl ServeArgs {
    /// The defaults, as `daas serve` with no flags would have them (tests start here).
    pub fn defaults() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Only::parse_from(["daas"]).serve
    }
}
