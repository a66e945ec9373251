//! Queries on API tokens, with the ownership rule: one's own, or anyone's for an admin.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Token {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// Whose tokens a request is about: the caller's, or (admins only) another user's.
pub async fn owner(db: &PgPool, caller: &CurrentUser, username: Option<&str>) -> Result<(Uuid, String)> {
    match username {
        None => Ok((caller.id, caller.username.clone())),
        Some(name) if name == caller.username => Ok((caller.id, caller.username.clone())),
        Some(_) if !caller.is_admin() => Err(AppError::NotFound),
        Some(name) => sqlx::query_as("select id, username from users where username = $1")
            .bind(name)
            .fetch_optional(db)
            .await?
            .ok_or(AppError::NotFound),
    }
}

/// Live tokens (not revoked, not expired), newest first.
pub async fn list(db: &PgPool, user_id: Uuid) -> Result<Vec<Token>> {
    Ok(sqlx::query_as(
        "select id, name, created_at, last_used_at, expires_at from api_tokens
         where user_id = $1 and revoked_at is null and (expires_at is null or expires_at > now())
         order by created_at desc",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

#[derive(Deserialize, ToSchema)]
pub struct NewToken {
    /// A name to recognise it by, e.g. "laptop scripts".
    pub name: String,
    /// Days until it expires (1 to 365); no expiry when absent.
    pub expires_in_days: Option<i64>,
    /// Admins only: create it for this user.
    pub user: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: Uuid,
    pub name: String,
    /// The secret: shown this once, never again.
    pub token: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

pub async fn create(db: &PgPool, actor: &Actor, caller: &CurrentUser, new: &NewToken) -> Result<CreatedToken> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::invalid("name", "give the token a name of 1 to 100 characters"));
    }
    let expires_at = match new.expires_in_days {
        None => None,
        Some(days @ 1..=365) => Some(OffsetDateTime::now_utc() + time::Duration::days(days)),
        Some(_) => return Err(AppError::invalid("expires_in_days", "must be between 1 and 365")),
    };
    let (user_id, username) = owner(db, caller, new.user.as_deref()).await?;
    let mut tx = db.begin().await?;
    let (id, token) = crate::auth::tokens::create(&mut *tx, user_id, name, expires_at).await?;
    audit::record(
        &mut *tx,
        actor,
        "token.create",
        "api_token",
        &id.to_string(),
        serde_json::json!({"user": username, "name": name}),
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedToken { id, name: name.to_string(), token, expires_at })
}

/// Revokes a token of the caller's (any token for an admin); 404 for anyone else's, and
/// for a token that is not `owner`'s when one is named.
pub async fn revoke(db: &PgPool, actor: &Actor, caller: &CurrentUser, id: Uuid, owner: Option<&str>) -> Result<()> {
    let mut tx = db.begin().await?;
    let revoked: Option<(String, String)> = sqlx::query_as(
        "update api_tokens t set revoked_at = now() from users u
         where t.id = $1 and u.id = t.user_id and t.revoked_at is null and (t.user_id = $2 or $3)
           and ($4::text is null or u.username = $4)
         returning u.username, t.name",
    )
    .bind(id)
    .bind(caller.id)
    .bind(caller.is_admin())
    .bind(owner)
    .fetch_optional(&mut *tx)
    .await?;
    let (owner, name) = revoked.ok_or(AppError::NotFound)?;
    audit::record(
        &mut *tx,
        actor,
        "token.revoke",
        "api_token",
        &id.to_string(),
        serde_json::json!({"user": owner, "name": name}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
