//! The audit log's queries: events matching a filter, as a page or all of them.

use serde::Serialize;
use utoipa::ToSchema;

use sqlx::{PgExecutor, Postgres, QueryBuilder};
use time::OffsetDateTime;

/// What the events must match; `None` matches anything.
pub struct Matching<'a> {
    pub actor: Option<&'a str>,
    /// An action, or a prefix of whole words (`image` matches `image.update`).
    pub action: Option<&'a str>,
    pub object_type: Option<&'a str>,
    pub object_id: Option<&'a str>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

impl<'a> Matching<'a> {
    fn push_where(&self, q: &mut QueryBuilder<'a, Postgres>) {
        q.push(" where true");
        if let Some(actor) = self.actor {
            q.push(" and actor_name = ").push_bind(actor);
        }
        if let Some(action) = self.action {
            q.push(" and (action = ").push_bind(action);
            q.push(r" or action like replace(replace(").push_bind(action).push(r", '_', '\_'), '%', '\%') || '.%')");
        }
        if let Some(object_type) = self.object_type {
            q.push(" and object_type = ").push_bind(object_type);
        }
        if let Some(object_id) = self.object_id {
            q.push(" and object_id = ").push_bind(object_id);
        }
        if let Some(from) = self.from {
            q.push(" and at >= ").push_bind(from);
        }
        if let Some(to) = self.to {
            q.push(" and at < ").push_bind(to);
        }
    }
}

fn select<'a>(matching: &Matching<'a>) -> QueryBuilder<'a, Postgres> {
    let mut q = QueryBuilder::new(
        "select id, at, actor_name as actor, action, object_type, object_id, details, remote_addr, request_id
         from audit_events",
    );
    matching.push_where(&mut q);
    q
}

/// Newest first, `limit` from `offset`.
pub async fn page(
    db: impl PgExecutor<'_>,
    matching: &Matching<'_>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<AuditEvent>> {
    let mut q = select(matching);
    q.push(" order by id desc limit ").push_bind(limit).push(" offset ").push_bind(offset);
    q.build_query_as().fetch_all(db).await
}

/// Oldest first, at most `limit`.
pub async fn oldest(db: impl PgExecutor<'_>, matching: &Matching<'_>, limit: i64) -> sqlx::Result<Vec<AuditEvent>> {
    let mut q = select(matching);
    q.push(" order by id limit ").push_bind(limit);
    q.build_query_as().fetch_all(db).await
}

pub async fn count(db: impl PgExecutor<'_>, matching: &Matching<'_>) -> sqlx::Result<i64> {
    let mut q = QueryBuilder::new("select count(*) from audit_events");
    matching.push_where(&mut q);
    q.build_query_scalar().fetch_one(db).await
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditEvent {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The username at the time (or `cli`).
    pub actor: Option<String>,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// Where the request came from.
    pub remote_addr: Option<String>,
    pub request_id: Option<String>,
}
