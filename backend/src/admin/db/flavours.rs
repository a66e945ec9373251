//! The flavours' queries.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::sessions::lifecycle::SessionState;

/// `select ... from flavours f`, each flavour with its session counts; the caller pushes
/// the `where` and `order by`.
fn select() -> QueryBuilder<'static, Postgres> {
    let mut q = QueryBuilder::new(
        "select f.id, f.name, f.cpu_millis, f.memory_mib, f.gpus, f.gpu_type, f.disk_gib,
            f.node_selector, f.tolerations, f.allowed_roles, f.enabled,
            (select count(*) from sessions s where s.flavour_id = f.id and s.state = any(",
    );
    q.push_bind(SessionState::ACTIVE);
    q.push(
        ")) as active_sessions,
            (select count(*) from sessions s where s.flavour_id = f.id) as total_sessions,
            f.created_at
        from flavours f",
    );
    q
}

pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<AdminFlavour> {
    let mut q = select();
    q.push(" where f.id = ").push_bind(id);
    q.build_query_as().fetch_one(db).await
}

/// Every flavour, smallest first.
pub async fn all(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<AdminFlavour>> {
    select().push(" order by f.gpus, f.cpu_millis, f.memory_mib, f.name").build_query_as().fetch_all(db).await
}

/// The columns an admin sets, in the order `bind_settings` binds them ($1 to $10).
macro_rules! settings {
    () => {
        "name, cpu_millis, memory_mib, gpus, gpu_type, disk_gib, node_selector, tolerations, allowed_roles, enabled"
    };
}

fn bind_settings<'q>(q: Query<'q, Postgres, PgArguments>, f: &'q FlavourInput) -> Query<'q, Postgres, PgArguments> {
    q.bind(&f.name)
        .bind(f.cpu_millis)
        .bind(f.memory_mib)
        .bind(f.gpus)
        .bind(&f.gpu_type)
        .bind(f.disk_gib)
        .bind(&f.node_selector)
        .bind(&f.tolerations)
        .bind(&f.allowed_roles)
        .bind(f.enabled)
}

/// Stores a checked new flavour; fails on `flavours_name_key` when the name is taken.
pub async fn insert(tx: &mut PgConnection, f: &FlavourInput) -> sqlx::Result<Uuid> {
    let sql = concat!(
        "insert into flavours (",
        settings!(),
        ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning id"
    );
    bind_settings(sqlx::query(sql), f).fetch_one(tx).await?.try_get("id")
}

/// Locks a flavour's row; whether it was enabled, `None` when there is no such flavour.
pub async fn lock_enabled(tx: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar("select enabled from flavours where id = $1 for update").bind(id).fetch_optional(tx).await
}

/// Stores a flavour's checked settings; fails on `flavours_name_key` when the name is taken.
pub async fn update(tx: &mut PgConnection, id: Uuid, f: &FlavourInput) -> sqlx::Result<()> {
    let sql =
        concat!("update flavours set (", settings!(), ") = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) where id = $11");
    bind_settings(sqlx::query(sql), f).bind(id).execute(tx).await?;
    Ok(())
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct AdminFlavour {
    pub id: Uuid,
    pub name: String,
    pub cpu_millis: i32,
    pub memory_mib: i32,
    pub gpus: i32,
    /// e.g. `nvidia-a100`; only with GPUs.
    pub gpu_type: Option<String>,
    pub disk_gib: i32,
    /// Kubernetes node labels a pod of this flavour must land on.
    #[schema(value_type = Object)]
    pub node_selector: Value,
    /// Kubernetes tolerations of its pods.
    #[schema(value_type = Vec<Object>)]
    pub tolerations: Value,
    pub allowed_roles: Vec<String>,
    pub enabled: bool,
    /// Sessions of it not yet stopped.
    pub active_sessions: i64,
    /// Sessions ever launched on it (a flavour with any cannot be deleted, only disabled).
    pub total_sessions: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlavourInput {
    pub name: String,
    pub cpu_millis: i32,
    pub memory_mib: i32,
    #[serde(default)]
    pub gpus: i32,
    pub gpu_type: Option<String>,
    #[serde(default)]
    pub disk_gib: i32,
    /// Label name to value, e.g. `{"nvidia.com/gpu.present": "true"}`.
    #[serde(default = "super::empty_object")]
    #[schema(value_type = Object)]
    pub node_selector: Value,
    /// Kubernetes tolerations: `[{"key", "operator": "Exists"|"Equal", "value", "effect"}]`.
    #[serde(default = "super::empty_array")]
    #[schema(value_type = Vec<Object>)]
    pub tolerations: Value,
    #[serde(default = "super::all_roles")]
    pub allowed_roles: Vec<String>,
    #[serde(default = "super::yes")]
    pub enabled: bool,
}
