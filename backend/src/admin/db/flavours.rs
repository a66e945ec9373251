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
            f.node_selector, f.tolerations, f.slurm_partition, f.slurm_account, f.slurm_qos,
            f.slurm_constraint, f.allowed_roles, f.enabled,
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

/// The columns an admin sets, in the order `bind_settings` binds them ($1 to $14).
macro_rules! settings {
    () => {
        "name, cpu_millis, memory_mib, gpus, gpu_type, disk_gib, node_selector, tolerations, \
         slurm_partition, slurm_account, slurm_qos, slurm_constraint, allowed_roles, enabled"
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
        .bind(&f.slurm_partition)
        .bind(&f.slurm_account)
        .bind(&f.slurm_qos)
        .bind(&f.slurm_constraint)
        .bind(&f.allowed_roles)
        .bind(f.enabled)
}

/// Stores a checked new flavour; fails on `flavours_name_key` when the name is taken.
pub async fn insert(tx: &mut PgConnection, f: &FlavourInput) -> sqlx::Result<Uuid> {
    let sql = concat!(
        "insert into flavours (",
        settings!(),
        ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) returning id"
    );
    bind_settings(sqlx::query(sql), f).fetch_one(tx).await?.try_get("id")
}

/// Locks a flavour's row; whether it was enabled, `None` when there is no such flavour.
pub async fn lock_enabled(tx: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar("select enabled from flavours where id = $1 for update").bind(id).fetch_optional(tx).await
}

/// Stores a flavour's checked settings; fails on `flavours_name_key` when the name is taken.
pub async fn update(tx: &mut PgConnection, id: Uuid, f: &FlavourInput) -> sqlx::Result<()> {
    let sql = concat!(
        "update flavours set (",
        settings!(),
        ") = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) where id = $15"
    );
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
    /// Slurm only: the partition its jobs go to (`sbatch --partition`); null: the cluster's default.
    pub slurm_partition: Option<String>,
    /// Slurm only: the account its jobs are charged to (`--account`).
    pub slurm_account: Option<String>,
    /// Slurm only: the quality of service of its jobs (`--qos`).
    pub slurm_qos: Option<String>,
    /// Slurm only: the node features its jobs need, in Slurm's syntax (`--constraint`, e.g. `v100&ib`).
    pub slurm_constraint: Option<String>,
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
    /// Slurm only: the partition (`sbatch --partition`), a Slurm name (letters, digits,
    /// `_.-`, at most 100 characters); trimmed, blank or absent: the cluster's default.
    pub slurm_partition: Option<String>,
    /// Slurm only: the account charged (`--account`), a Slurm name like the partition.
    pub slurm_account: Option<String>,
    /// Slurm only: the quality of service (`--qos`), a Slurm name like the partition.
    pub slurm_qos: Option<String>,
    /// Slurm only: node features in Slurm's syntax (`--constraint`, e.g. `v100&ib`,
    /// `[rack1|rack2]`): letters, digits and `_.-&|:*()[]`, at most 100 characters.
    pub slurm_constraint: Option<String>,
    #[serde(default = "super::all_roles")]
    pub allowed_roles: Vec<String>,
    #[serde(default = "super::yes")]
    pub enabled: bool,
}
