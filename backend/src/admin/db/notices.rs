//! The notices' queries.

use serde::Serialize;
use utoipa::ToSchema;

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

/// The notices showing now, most severe first.
pub async fn active(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Notice>> {
    sqlx::query_as(
        "select id, message, level, starts_at, expires_at from notices where starts_at <= now() and expires_at > now()
         order by case level when 'outage' then 0 when 'warning' then 1 else 2 end, starts_at desc",
    )
    .fetch_all(db)
    .await
}

/// Notices not yet expired, and those expired in the last 30 days, newest first.
pub async fn recent(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Notice>> {
    sqlx::query_as(
        "select id, message, level, starts_at, expires_at from notices
         where expires_at > now() - interval '30 days' order by starts_at desc",
    )
    .fetch_all(db)
    .await
}

/// Stores a checked notice.
pub async fn insert(
    tx: &mut PgConnection,
    message: &str,
    level: &str,
    starts_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    created_by: Option<Uuid>,
) -> sqlx::Result<Notice> {
    sqlx::query_as(
        "insert into notices (message, level, starts_at, expires_at, created_by) values ($1, $2, $3, $4, $5)
         returning id, message, level, starts_at, expires_at",
    )
    .bind(message)
    .bind(level)
    .bind(starts_at)
    .bind(expires_at)
    .bind(created_by)
    .fetch_one(tx)
    .await
}

/// Deletes a notice; its message, `None` when there was no such notice.
pub async fn delete(tx: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("delete from notices where id = $1 returning message").bind(id).fetch_optional(tx).await
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Notice {
    pub id: Uuid,
    pub message: String,
    /// `info`, `warning` or `outage`.
    pub level: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}
