//! Connecting to PostgreSQL and applying migrations.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use crate::config::DbArgs;
use crate::devdb::DevCluster;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The database URL: the configured one, else the development cluster's.
pub async fn url(args: &DbArgs) -> anyhow::Result<String> {
    match &args.database_url {
        Some(url) => Ok(url.clone()),
        None => DevCluster::new(&args.dev_dir)?.ensure().await,
    }
}

/// A pool, after checking once that the database answers, so a wrong URL is one clear line
/// at start-up rather than a stream of failed requests.
pub async fn connect(args: &DbArgs) -> anyhow::Result<PgPool> {
    let url = url(args).await?;
    let options: PgConnectOptions = url.parse().context("DATABASE_URL is not a valid PostgreSQL URL")?;
    // No JIT: daas's queries are short, and at a facility's size (1,000,000 sessions) the
    // planner's cost estimates start JIT compiles of 300-500 ms on list pages that run in
    // tens of milliseconds without them (tools/bench/facility.sql, `make bench-db`).
    let options = options.options([("jit", "off")]);
    let host = options.get_host().to_string();
    let port = options.get_port();
    // One direct connection first: its error says why ("connection refused", "password
    // authentication failed"), where the pool would only say it timed out.
    let probe = tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect_with(&options)).await;
    match probe {
        Ok(Ok(conn)) => conn.close().await?,
        Ok(Err(err)) => return Err(err).with_context(|| format!("cannot connect to PostgreSQL at {host}:{port}")),
        Err(_) => anyhow::bail!("cannot connect to PostgreSQL at {host}:{port}: no answer within 10 s"),
    }
    Ok(PgPoolOptions::new()
        .max_connections(args.db_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Fails unless every migration this binary knows has been applied.
pub async fn check_migrated(pool: &PgPool) -> anyhow::Result<()> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("select version from _sqlx_migrations where success").fetch_all(pool).await {
            Ok(applied) => applied,
            // 42P01: no such table, so nothing was ever migrated.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(e.into()),
        };
    let missing = MIGRATOR.iter().filter(|m| !applied.contains(&m.version)).count();
    if missing > 0 {
        anyhow::bail!("{missing} database migration(s) not applied; run `daas migrate`");
    }
    Ok(())
}
