//! API tokens: `daas_` followed by 32 random bytes (base64url). Only the SHA-256 of a token
//! is stored, so a database dump gives no one a way in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

pub const PREFIX: &str = "daas_";

/// A new random secret with the given prefix, and its hash for the database.
pub fn generate(prefix: &str) -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&token);
    (token, hash)
}

pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Stores a new token for the user and returns its secret, which is shown once.
pub async fn create(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    name: &str,
    expires_at: Option<OffsetDateTime>,
) -> sqlx::Result<(Uuid, String)> {
    let (token, hash) = generate(PREFIX);
    let id = sqlx::query_scalar(
        "insert into api_tokens (user_id, name, token_hash, expires_at) values ($1, $2, $3, $4) returning id",
    )
    .bind(user_id)
    .bind(name)
    .bind(hash)
    .bind(expires_at)
    .fetch_one(db)
    .await?;
    Ok((id, token))
}

/// The enabled user a token belongs to, if it is live. Marks the token used (at most once
/// a minute, so a busy script does not turn every read into a write).
pub async fn lookup(db: &sqlx::PgPool, token: &str) -> sqlx::Result<Option<crate::auth::identity::CurrentUser>> {
    sqlx::query_as(
        "with t as (
             select id, user_id, last_used_at from api_tokens
             where token_hash = $1 and revoked_at is null and (expires_at is null or expires_at > now())
         ), touched as (
             update api_tokens set last_used_at = now()
             where id = (select id from t where last_used_at is null or last_used_at < now() - interval '1 minute')
         )
         select u.id, u.username, u.display_name, u.role
         from t join users u on u.id = t.user_id where u.enabled",
    )
    .bind(hash(token))
    .fetch_optional(db)
    .await
}
