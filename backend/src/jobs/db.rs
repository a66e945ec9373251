//! Queries on jobs: what only a job has, beside its session. No access rule here: the
//! handlers find the job's session through `sessions::db::find_visible` first.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::runtime::Handle;

/// The columns of a job that its session does not have.
#[derive(sqlx::FromRow)]
pub struct JobRow {
    pub parameters: serde_json::Value,
    /// The name of the dataset named by the `dataset` parameter.
    pub input_dataset: Option<String>,
    pub output_location: Option<String>,
}

/// The job of the session `id`.
pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<JobRow> {
    sqlx::query_as(
        "select j.parameters, d.name as input_dataset, j.output_location
         from jobs j left join datasets d on d.id = j.input_dataset_id where j.session_id = $1",
    )
    .bind(id)
    .fetch_one(db)
    .await
}

/// What the runtime needs to find the job's output: its session's runtime handle.
pub async fn runtime_handle(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Handle> {
    let handle: Option<serde_json::Value> =
        sqlx::query_scalar("select runtime_handle from sessions where id = $1").bind(id).fetch_one(db).await?;
    Ok(Handle(handle.unwrap_or(serde_json::Value::Null)))
}
