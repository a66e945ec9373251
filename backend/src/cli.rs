//! What each subcommand does.

use std::io::BufRead;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::config::{
    Cli, Command, DbArgs, ImportCommand, ImportFormat, RuntimeKind, ServeArgs, SessionArgs, TokenCommand, UserCommand,
};
use crate::devdb::DevCluster;
use crate::proposals::import;
use crate::state::{AppState, Config};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let db = &cli.db;
    match cli.command {
        Command::Serve(args) => {
            let pool = crate::db::connect(db).await?;
            crate::db::check_migrated(&pool).await?;
            serve(pool, args).await
        }
        Command::SlurmNode { dir } => {
            let code = crate::runtime::slurm::node::run(&dir).await?;
            std::process::exit(code);
        }
        Command::Migrate => {
            let pool = crate::db::connect(db).await?;
            crate::db::MIGRATOR.run(&pool).await.context("migration failed")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Dev(args) => dev(db, args).await,
        Command::DevDb { stop } => {
            let cluster = DevCluster::new(&db.dev_dir)?;
            if stop {
                cluster.stop()
            } else {
                println!("{}", cluster.ensure().await?);
                Ok(())
            }
        }
        Command::Import(ImportCommand::Proposals { file, format }) => {
            let format = match format {
                Some(ImportFormat::Json) => import::Format::Json,
                Some(ImportFormat::Csv) => import::Format::Csv,
                None => match file.extension().and_then(|e| e.to_str()) {
                    Some(e) if e.eq_ignore_ascii_case("json") => import::Format::Json,
                    Some(e) if e.eq_ignore_ascii_case("csv") => import::Format::Csv,
                    _ => bail!("cannot tell the format of {} from its name; pass --format json|csv", file.display()),
                },
            };
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let proposals = import::decode(&bytes)
                .and_then(|text| import::parse(&text, format))
                .map_err(|e| anyhow::anyhow!("{}: {e}; nothing was imported", file.display()))?;
            let pool = migrated_pool(db).await?;
            let mut tx = pool.begin().await?;
            let summary = import::apply(&mut tx, &proposals).await?;
            crate::audit::record_cli(
                &mut *tx,
                "proposal.import",
                "file",
                &file.display().to_string(),
                serde_json::to_value(&summary)?,
            )
            .await?;
            tx.commit().await?;
            println!("{summary}");
            Ok(())
        }
        Command::Token(TokenCommand::Create { user, name, expires_in }) => {
            let pool = migrated_pool(db).await?;
            let user_id = crate::auth::users::find(&pool, &user).await?;
            let expires_at = expires_in
                .map(|d| time::Duration::try_from(d).map(|d| OffsetDateTime::now_utc() + d))
                .transpose()
                .context("--expires-in is too long")?;
            let mut tx = pool.begin().await?;
            let (id, token) = crate::auth::tokens::create(&mut *tx, user_id, &name, expires_at).await?;
            crate::audit::record_cli(
                &mut *tx,
                "token.create",
                "api_token",
                &id.to_string(),
                serde_json::json!({"user": user, "name": name}),
            )
            .await?;
            tx.commit().await?;
            println!("{token}");
            Ok(())
        }
        Command::Check(args) => {
            let pool = migrated_pool(db).await?;
            let faults = crate::datasets::check::run(&pool, &args.data_root, &args.experiment_storage).await?;
            for fault in &faults {
                println!("{fault}");
            }
            if !faults.is_empty() {
                bail!("{} dataset link(s) break the storage rule ({})", faults.len(), args.experiment_storage);
            }
            eprintln!("every dataset link lies in its experiment's folder ({})", args.experiment_storage);
            Ok(())
        }
        Command::User(command) => {
            let pool = migrated_pool(db).await?;
            match command {
                UserCommand::Add { username, name, email, affiliation, role, password } => {
                    let password = if password { Some(read_password()?) } else { None };
                    let user = crate::auth::users::NewUser {
                        username: &username,
                        display_name: name.as_deref().unwrap_or(&username),
                        email: email.as_deref(),
                        affiliation: affiliation.as_deref(),
                        role,
                        password: password.as_deref(),
                    };
                    crate::auth::users::add(&pool, user).await?;
                    println!("user {username} added");
                }
                UserCommand::SetRole { username, role } => {
                    crate::auth::users::set_role(&pool, &username, role).await?;
                    println!("user {username} is now {}", role.as_str());
                }
                UserCommand::Disable { username } => {
                    crate::auth::users::set_enabled(&pool, &username, false).await?;
                    println!("user {username} disabled");
                }
                UserCommand::Enable { username } => {
                    crate::auth::users::set_enabled(&pool, &username, true).await?;
                    println!("user {username} enabled");
                }
            }
            Ok(())
        }
    }
}

/// A pool on a migrated database: the development cluster is migrated on the spot (it is
/// ours); a configured database must have been migrated with `daas migrate`.
async fn migrated_pool(db: &DbArgs) -> anyhow::Result<PgPool> {
    let pool = crate::db::connect(db).await?;
    if db.database_url.is_none() {
        crate::db::MIGRATOR.run(&pool).await.context("migration failed")?;
    }
    crate::db::check_migrated(&pool).await?;
    Ok(pool)
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.chars().count() < 8 {
        bail!("the password must have at least 8 characters");
    }
    Ok(password)
}

async fn dev(db: &DbArgs, mut args: ServeArgs) -> anyhow::Result<()> {
    // The demo accounts log in with passwords.
    args.web.local_login = true;
    // On another port than the default, the browser's origin is that port's: left at their
    // defaults, the public URL and the notebooks' domain follow `--listen` (else every form
    // would be refused as coming from another site).
    if args.listen.port() != 8080 {
        let port = args.listen.port();
        if args.web.public_url.as_str() == "http://localhost:8080/" {
            args.web.public_url = format!("http://localhost:{port}").parse()?;
        }
        if args.web.sessions_domain == "sessions.localhost:8080" {
            args.web.sessions_domain = format!("sessions.localhost:{port}");
        }
    }
    let pool = migrated_pool(db).await?;
    if let Some(logins) = crate::demo::load_into(&pool, &args.data_root, &args.experiment_storage).await? {
        let text: String = logins.0.iter().map(|(u, p)| format!("{u} {p}\n")).collect();
        let path = db.dev_dir.join("demo-logins.txt");
        std::fs::write(&path, &text)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    crate::demo::refresh(&pool, &args.data_root).await?;
    if let Ok(text) = std::fs::read_to_string(db.dev_dir.join("demo-logins.txt")) {
        println!("Demo accounts (username password), also in {}:", db.dev_dir.join("demo-logins.txt").display());
        for line in text.lines() {
            println!("  {line}");
        }
    }
    println!("daas is at http://localhost:{}/", args.listen.port());
    serve(pool, args).await
}

async fn serve(pool: PgPool, args: ServeArgs) -> anyhow::Result<()> {
    // First: what arrives from now on waits in the socket's queue while daas adopts what runs.
    let listener = listener(args.listen).await?;
    let config = Config::from_args(&args);
    let runtime = runtime(&args.sessions, &args.data_root, &args.web.public_url).await?;
    if !args.web.frontend_dir.join("static").is_dir() {
        tracing::warn!(
            frontend_dir = %args.web.frontend_dir.display(),
            "no static/ in the frontend folder: pages will have no CSS or JavaScript (set --frontend-dir)"
        );
    }
    // Connections left open by an earlier daas ended with it (their relays were its own).
    let closed = crate::sessions::access::close_left_open(&pool).await?;
    if closed > 0 {
        tracing::info!(connections = closed, "closed the remote-access records an earlier daas left open");
    }
    let state = AppState::new(pool, config, runtime);
    // Adopts what runs before taking requests, then keeps Postgres and reality in step.
    crate::reconciler::reconcile_once(&state).await.context("the first reconcile pass failed")?;
    let background = crate::background::start(&state, crate::background::Reconciler::Run);
    tracing::info!(listen = %listener.local_addr()?, "serving");
    if let Some(addr) = args.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let app = crate::router::metrics_app(state.clone());
        tokio::spawn(async move { axum::serve(metrics, app).await });
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    let closing = state.clone();
    let app = crate::app(state, &background).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!(grace_s = grace.as_secs(), "shutting down");
        // Event streams and relays end now (clients resume or reconnect); requests finish.
        closing.events.close();
        let _ = tx.send(true);
    });
    let mut rx = rx;
    tokio::select! {
        result = server => result.context("server failed")?,
        _ = async { let _ = rx.wait_for(|v| *v).await; tokio::time::sleep(grace).await } => {
            tracing::warn!("open requests did not finish within the grace period");
        }
    }
    Ok(())
}

/// The listening socket: the one handed over by whoever started daas (systemd's socket
/// activation, `LISTEN_FDS`; it keeps the socket across restarts, so connections made
/// while daas restarts wait in its queue instead of being refused), else `listen` bound.
async fn listener(listen: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let inherited = listenfd::ListenFd::from_env()
        .take_tcp_listener(0)
        .context("the socket handed over in LISTEN_FDS is not a TCP listener")?;
    match inherited {
        Some(socket) => {
            socket.set_nonblocking(true)?;
            Ok(tokio::net::TcpListener::from_std(socket)?)
        }
        None => tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}")),
    }
}

/// The session engine chosen by `--runtime`, after checking what it needs.
async fn runtime(
    args: &SessionArgs,
    data_root: &std::path::Path,
    public_url: &url::Url,
) -> anyhow::Result<std::sync::Arc<dyn crate::runtime::Runtime>> {
    use crate::runtime::local::{which, Limits, LocalConfig, LocalRuntime};
    let folders = LocalConfig {
        sessions_dir: args.sessions_dir.clone(),
        homes_dir: args.homes_dir.clone(),
        data_root: data_root.to_owned(),
        venv: args.venv.clone(),
        tools_dir: args.tools_dir.clone(),
        stop_grace: args.stop_grace,
        gpu_devices: crate::runtime::local::gpu_devices(),
    };
    match args.runtime {
        RuntimeKind::Slurm => {
            use crate::runtime::slurm::{SlurmConfig, SlurmRuntime};
            let config = SlurmConfig {
                folders,
                callback_url: args.slurm.slurm_callback_url.clone().unwrap_or_else(|| public_url.clone()),
                daas_path: match &args.slurm.slurm_daas_path {
                    Some(path) => path.clone(),
                    None => std::env::current_exe().context("cannot tell where this daas program is")?,
                },
                warning: args.expiry_warning,
            };
            let callback = config.callback_url.to_string();
            let runtime = SlurmRuntime::new(config)?;
            tracing::info!(callback, "slurm runtime ready");
            Ok(std::sync::Arc::new(runtime))
        }
        RuntimeKind::Kubernetes => {
            let runtime = crate::runtime::kube::KubeRuntime::from_args(&args.kube).await?;
            tracing::info!(namespace = %args.kube.kube_namespace, "kubernetes runtime ready");
            Ok(std::sync::Arc::new(runtime))
        }
        RuntimeKind::Fake => {
            tracing::warn!("fake runtime: sessions are recorded, nothing runs (benchmarks of daas alone)");
            Ok(std::sync::Arc::new(crate::runtime::fake::FakeRuntime::default()))
        }
        RuntimeKind::Local => {
            let runtime = LocalRuntime::new(folders, Limits::detect())?;
            // Desktops and notebooks need these; without them only those launches fail.
            if which("Xvnc").is_none() {
                tracing::warn!("no Xvnc on PATH: desktops will fail to start (run `make deps`)");
            }
            if which("socat").is_none() {
                tracing::warn!(
                    "no socat on PATH: images that listen on {{port}} will not be reached (run `make deps`)"
                );
            }
            if !args.venv.join("bin/jupyter").exists() {
                tracing::warn!(venv = %args.venv.display(), "no jupyter in the venv: notebooks will fail to start (run `make deps`)");
            }
            tracing::info!(
                limits = runtime.limits().describe(),
                isolation = runtime.isolation().describe(),
                "local runtime ready"
            );
            Ok(std::sync::Arc::new(runtime))
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
