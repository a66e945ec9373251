//! Browser sessions: a random secret in an `HttpOnly` cookie, its SHA-256 in Postgres with
//! the user, a CSRF token, and idle and absolute expiry. Logging out ends the row, so a
//! copied cookie is worthless afterwards.

use axum::http::HeaderValue;
use sqlx::PgPool;
use time::Duration;
use uuid::Uuid;

use super::tokens;
use crate::auth::identity::CurrentUser;
use crate::state::Config;

pub const COOKIE: &str = "daas_session";

/// A live browser session, as the request extensions carry it.
#[derive(Clone, Debug)]
pub struct BrowserSession {
    pub id: Uuid,
    pub csrf_token: String,
}

/// Starts a session for the user; returns the `Set-Cookie` value.
pub async fn create(
    db: &PgPool,
    config: &Config,
    user_id: Uuid,
    remote_addr: Option<String>,
    user_agent: Option<String>,
) -> sqlx::Result<HeaderValue> {
    let (secret, hash) = tokens::generate("");
    let (csrf, _) = tokens::generate("");
    let max = Duration::hours(config.web.session_max_hours.into());
    let mut tx = db.begin().await?;
    sqlx::query(
        "insert into browser_sessions (user_id, token_hash, csrf_token, expires_at, remote_addr, user_agent)
         values ($1, $2, $3, now() + $4, $5, $6)",
    )
    .bind(user_id)
    .bind(hash)
    .bind(csrf)
    .bind(max)
    .bind(remote_addr)
    .bind(user_agent.map(|ua| ua.chars().take(300).collect::<String>()))
    .execute(&mut *tx)
    .await?;
    // Housekeeping: forget sessions that ended more than a month ago.
    sqlx::query("delete from browser_sessions where coalesce(ended_at, expires_at) < now() - interval '30 days'")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(cookie(config, &secret, Some(max)))
}

/// The `Set-Cookie` value for the session cookie; `max_age: None` deletes it.
pub fn cookie(config: &Config, value: &str, max_age: Option<Duration>) -> HeaderValue {
    let secure = if config.secure_cookies() { "; Secure" } else { "" };
    let age = max_age.map_or(0, |d| d.whole_seconds());
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={age}{secure}"))
        .expect("cookie characters are URL-safe base64")
}

/// The user and session behind a cookie value, if the session is live; touches it.
pub async fn lookup(db: &PgPool, config: &Config, secret: &str) -> sqlx::Result<Option<(CurrentUser, BrowserSession)>> {
    let idle = Duration::minutes(config.web.session_idle_minutes.into());
    let row: Option<(Uuid, String, Uuid, String, String, String)> = sqlx::query_as(
        "update browser_sessions s set last_seen_at = now()
         from users u
         where s.token_hash = $1 and u.id = s.user_id and u.enabled and s.ended_at is null
           and s.expires_at > now() and s.last_seen_at > now() - $2
         returning s.id, s.csrf_token, u.id, u.username, u.display_name, u.role",
    )
    .bind(tokens::hash(secret))
    .bind(idle)
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|(session_id, csrf_token, id, username, display_name, role)| {
        let role = crate::auth::identity::Role::parse(&role)?;
        Some((CurrentUser { id, username, display_name, role }, BrowserSession { id: session_id, csrf_token }))
    }))
}

/// Ends a session for good.
pub async fn end(db: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("update browser_sessions set ended_at = now() where id = $1 and ended_at is null")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// The value of our cookie in a `Cookie` header.
pub fn from_headers(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}
