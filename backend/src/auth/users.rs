//! User accounts as the CLI manages them (`daas user ...`), and the lookups of an account
//! the login needs.

use anyhow::{bail, Context};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::auth::identity::{CurrentUser, Role};

pub struct NewUser<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub email: Option<&'a str>,
    pub affiliation: Option<&'a str>,
    pub role: Role,
    pub password: Option<&'a str>,
}

pub fn check_username(username: &str) -> anyhow::Result<()> {
    let ok = !username.is_empty()
        && username.len() <= 64
        && username.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && username.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !ok {
        bail!("username {username:?}: use 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit");
    }
    Ok(())
}

pub async fn add(db: &PgPool, user: NewUser<'_>) -> anyhow::Result<Uuid> {
    check_username(user.username)?;
    let hash = user.password.map(super::password::hash).transpose()?;
    let mut tx = db.begin().await?;
    let id: Option<Uuid> = sqlx::query_scalar(
        "insert into users (username, display_name, email, affiliation, role, password_hash)
         values ($1, $2, $3, $4, $5, $6) on conflict (username) do nothing returning id",
    )
    .bind(user.username)
    .bind(user.display_name)
    .bind(user.email)
    .bind(user.affiliation)
    .bind(user.role.as_str())
    .bind(hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else { bail!("user {:?} already exists", user.username) };
    crate::audit::record_cli(
        &mut *tx,
        "user.create",
        "user",
        &id.to_string(),
        serde_json::json!({"username": user.username, "role": user.role}),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn find(db: &PgPool, username: &str) -> anyhow::Result<Uuid> {
    sqlx::query_scalar("select id from users where username = $1")
        .bind(username)
        .fetch_optional(db)
        .await?
        .with_context(|| format!("no user {username:?}"))
}

/// The username of the account `id` (which exists: the login just found it).
/// An enabled user by username, as the identity queries take.
pub async fn enabled(db: impl PgExecutor<'_>, username: &str) -> sqlx::Result<Option<CurrentUser>> {
    sqlx::query_as("select id, username, display_name, role from users where username = $1 and enabled")
        .bind(username)
        .fetch_optional(db)
        .await
}

/// A user's e-mail address and affiliation, as the user office gave them.
pub async fn contact(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<(Option<String>, Option<String>)> {
    sqlx::query_as("select email, affiliation from users where id = $1").bind(id).fetch_one(db).await
}

pub async fn username(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<String> {
    sqlx::query_scalar("select username from users where id = $1").bind(id).fetch_one(db).await
}

pub async fn set_role(db: &PgPool, username: &str, role: Role) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    let id: Uuid =
        sqlx::query_scalar("update users set role = $2, updated_at = now() where username = $1 returning id")
            .bind(username)
            .bind(role.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .with_context(|| format!("no user {username:?}"))?;
    crate::audit::record_cli(&mut *tx, "user.set_role", "user", &id.to_string(), serde_json::json!({"role": role}))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Enables or disables an account. Disabling ends its browser sessions at once; its API
/// tokens are refused because every lookup checks `enabled`.
pub async fn set_enabled(db: &PgPool, username: &str, enabled: bool) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    let id: Uuid = sqlx::query_scalar("select id from users where username = $1 for update")
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?
        .with_context(|| format!("no user {username:?}"))?;
    set_enabled_by(&mut tx, &crate::audit::Actor::cli(), id, enabled).await?;
    tx.commit().await?;
    Ok(())
}

/// `set_enabled` inside the caller's transaction, recording `actor` in the audit log
/// (the admin API calls this).
pub async fn set_enabled_by(
    tx: &mut sqlx::PgConnection,
    actor: &crate::audit::Actor,
    id: Uuid,
    enabled: bool,
) -> sqlx::Result<()> {
    sqlx::query("update users set enabled = $2, updated_at = now() where id = $1")
        .bind(id)
        .bind(enabled)
        .execute(&mut *tx)
        .await?;
    if !enabled {
        sqlx::query("update browser_sessions set ended_at = now() where user_id = $1 and ended_at is null")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    let action = if enabled { "user.enable" } else { "user.disable" };
    crate::audit::record(&mut *tx, actor, action, "user", &id.to_string(), serde_json::json!({})).await
}
