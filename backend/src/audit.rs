//! The audit log: who did what to which object, from where. Rows are only ever inserted
//! (a trigger refuses updates and deletes).

use sqlx::PgExecutor;
use uuid::Uuid;

/// Who acted, as the audit log records it.
pub struct Actor<'a> {
    pub user_id: Option<Uuid>,
    pub name: &'a str,
    pub remote_addr: Option<String>,
    pub request_id: Option<String>,
}

pub async fn record(
    db: impl PgExecutor<'_>,
    actor: &Actor<'_>,
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
    .bind(actor.name)
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
    let actor = Actor { user_id: None, name: "cli", remote_addr: Some("local".into()), request_id: None };
    record(db, &actor, action, object_type, object_id, details).await
}
