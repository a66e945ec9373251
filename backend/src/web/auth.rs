//! The caller's identity, from `Authorization: Bearer <token>`.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::tokens;
use crate::config::Role;
use crate::error::AppError;
use crate::state::AppState;

/// A logged-in, enabled user. Extracting it answers 401 when there is none.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct CurrentUser {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
}

impl CurrentUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<CurrentUser>() {
            return Ok(user.clone());
        }
        let Some(token) = bearer(parts) else {
            return Err(AppError::Unauthorized("log in or send an API token"));
        };
        // One statement finds the user and marks the token used (at most once a minute,
        // so a busy script does not turn every read into a write).
        let user: Option<CurrentUser> = sqlx::query_as(
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
        .bind(tokens::hash(token))
        .fetch_optional(&state.db)
        .await?;
        let user = user.ok_or(AppError::Unauthorized("the token is unknown, expired or revoked"))?;
        tracing::Span::current().record("user.id", tracing::field::display(user.id));
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}
