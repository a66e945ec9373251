//! The audit log: who did what to which object, from where. Rows are only ever inserted
//! (a trigger refuses updates and deletes).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::auth::identity::CurrentUser;
use crate::error::AppError;
use crate::state::AppState;

/// Who acted, as the audit log records it. As an extractor it is the logged-in caller
/// (401 otherwise) with their address and the request id.
#[derive(Clone, Debug)]
pub struct Actor {
    pub user_id: Option<Uuid>,
    pub name: String,
    pub remote_addr: Option<String>,
    pub request_id: Option<String>,
}

impl Actor {
    /// Someone running `daas` on the server.
    pub fn cli() -> Self {
        Actor { user_id: None, name: "cli".into(), remote_addr: Some("local".into()), request_id: None }
    }

    /// The request's origin without a user (for example a failed login).
    pub fn anonymous(parts: &Parts, name: &str) -> Self {
        Actor {
            user_id: None,
            name: name.into(),
            remote_addr: remote_addr(&parts.extensions),
            request_id: parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(String::from),
        }
    }
}

/// The browser's address as daas saw it (`None` where the server was not told).
pub fn remote_addr(extensions: &axum::http::Extensions) -> Option<String> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string())
}

/// `remote_addr` as an extractor.
pub struct RemoteAddr(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RemoteAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RemoteAddr(remote_addr(&parts.extensions)))
    }
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        Ok(Actor { user_id: Some(user.id), name: user.username, ..Actor::anonymous(parts, "") })
    }
}

pub async fn record(
    db: impl PgExecutor<'_>,
    actor: &Actor,
    action: &str,
    object_type: &str,
    object_id: &str,
    details: serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into audit_events (actor_id, actor_name, action, object_type, object_id, details, remote_addr, request_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(actor.user_id)
    .bind(&actor.name)
    .bind(action)
    .bind(object_type)
    .bind(object_id)
    .bind(details)
    .bind(&actor.remote_addr)
    .bind(&actor.request_id)
    .execute(db)
    .await?;
    Ok(())
}

/// An action taken on the command line, by whoever runs `daas` on the server.
pub async fn record_cli(
    db: impl PgExecutor<'_>,
    action: &str,
    object_type: &str,
    object_id: &str,
    details: serde_json::Value,
) -> sqlx::Result<()> {
    record(db, &Actor::cli(), action, object_type, object_id, details).await
}
