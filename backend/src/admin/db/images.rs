//! The image catalogue's queries.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::sessions::lifecycle::SessionState;

/// `select ... from images i`, each image with its flavours and session counts; the caller
/// pushes the `where` and `order by`.
fn select() -> QueryBuilder<'static, Postgres> {
    let mut q = QueryBuilder::new(
        "select i.id, i.name, i.kind, i.reference, i.protocol, i.default_cpu_millis, i.default_memory_mib,
            i.default_gpus, i.default_disk_gib, i.enabled, i.description, i.icon, i.allowed_roles,
            array(select f.flavour_id from image_flavours f where f.image_id = i.id order by f.flavour_id) as flavours,
            i.parameter_schema, i.local_command,
            (select count(*) from sessions s where s.image_id = i.id and s.state = any(",
    );
    q.push_bind(SessionState::ACTIVE);
    q.push(
        ")) as active_sessions,
            (select count(*) from sessions s where s.image_id = i.id) as total_sessions,
            i.created_at, i.updated_at
        from images i",
    );
    q
}

pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<AdminImage> {
    let mut q = select();
    q.push(" where i.id = ").push_bind(id);
    q.build_query_as().fetch_one(db).await
}

/// Every image, enabled or not, by kind and name.
pub async fn all(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<AdminImage>> {
    select().push(" order by i.kind, i.name").build_query_as().fetch_all(db).await
}

/// The columns an admin sets, in the order `bind_settings` binds them ($1 to $14).
macro_rules! settings {
    () => {
        "name, kind, reference, protocol, default_cpu_millis, default_memory_mib, default_gpus, default_disk_gib, \
         enabled, description, icon, allowed_roles, parameter_schema, local_command"
    };
}

fn bind_settings<'q>(
    q: Query<'q, Postgres, PgArguments>,
    i: &'q ImageInput,
    protocol: &'q str,
) -> Query<'q, Postgres, PgArguments> {
    q.bind(&i.name)
        .bind(&i.kind)
        .bind(&i.reference)
        .bind(protocol)
        .bind(i.default_cpu_millis)
        .bind(i.default_memory_mib)
        .bind(i.default_gpus)
        .bind(i.default_disk_gib)
        .bind(i.enabled)
        .bind(&i.description)
        .bind(&i.icon)
        .bind(&i.allowed_roles)
        .bind(&i.parameter_schema)
        .bind(&i.local_command)
}

/// Stores a checked new image; fails on `images_name_key` when the name is taken.
pub async fn insert(tx: &mut PgConnection, i: &ImageInput, protocol: &str) -> sqlx::Result<Uuid> {
    let sql = concat!(
        "insert into images (",
        settings!(),
        ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) returning id"
    );
    bind_settings(sqlx::query(sql), i, protocol).fetch_one(tx).await?.try_get("id")
}

/// Stores an image's checked settings; fails on `images_name_key` when the name is taken.
pub async fn update(tx: &mut PgConnection, id: Uuid, i: &ImageInput, protocol: &str) -> sqlx::Result<()> {
    let sql = concat!(
        "update images set (",
        settings!(),
        ", updated_at) = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now()) where id = $15"
    );
    bind_settings(sqlx::query(sql), i, protocol).bind(id).execute(tx).await?;
    Ok(())
}

/// How many of `flavours` exist.
pub async fn count_flavours(tx: &mut PgConnection, flavours: &[Uuid]) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from flavours where id = any($1)").bind(flavours).fetch_one(tx).await
}

/// Replaces the flavours an image may run on.
pub async fn set_flavours(tx: &mut PgConnection, image: Uuid, flavours: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query("delete from image_flavours where image_id = $1").bind(image).execute(&mut *tx).await?;
    sqlx::query("insert into image_flavours (image_id, flavour_id) select $1, unnest($2::uuid[])")
        .bind(image)
        .bind(flavours)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// An image as the admin sees it: everything, enabled or not.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct AdminImage {
    pub id: Uuid,
    pub name: String,
    /// `desktop`, `notebook` or `job`.
    pub kind: String,
    /// OCI reference the Kubernetes runtime pulls.
    pub reference: String,
    /// `vnc`, `http` or `none` (follows from the kind).
    pub protocol: String,
    pub default_cpu_millis: i32,
    pub default_memory_mib: i32,
    pub default_gpus: i32,
    pub default_disk_gib: i32,
    /// A disabled image cannot be launched; its running sessions keep running.
    pub enabled: bool,
    pub description: String,
    pub icon: Option<String>,
    /// Roles that may launch it.
    pub allowed_roles: Vec<String>,
    /// Flavours it may run on; empty means any.
    pub flavours: Vec<Uuid>,
    /// For jobs: the JSON Schema of the parameters.
    #[schema(value_type = Option<Object>)]
    pub parameter_schema: Option<Value>,
    /// What the local runtime runs, e.g. `{"argv": ["python3", "recon.py"]}`.
    #[schema(value_type = Option<Object>)]
    pub local_command: Option<Value>,
    /// Sessions of it not yet stopped.
    pub active_sessions: i64,
    /// Sessions ever launched from it (an image with any cannot be deleted).
    pub total_sessions: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What an admin sends to create or replace an image.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    pub name: String,
    /// `desktop`, `notebook` or `job`.
    pub kind: String,
    /// OCI image reference, e.g. `registry.example/daas/desktop:1.0`.
    pub reference: String,
    /// `vnc` (desktop), `http` (notebook) or `none` (job); follows from the kind when left out.
    pub protocol: Option<String>,
    pub default_cpu_millis: i32,
    pub default_memory_mib: i32,
    #[serde(default)]
    pub default_gpus: i32,
    #[serde(default)]
    pub default_disk_gib: i32,
    #[serde(default = "super::yes")]
    pub enabled: bool,
    #[serde(default)]
    pub description: String,
    /// A URL or a short name of an icon.
    pub icon: Option<String>,
    /// Default: every role.
    #[serde(default = "super::all_roles")]
    pub allowed_roles: Vec<String>,
    /// Flavour ids it may run on; empty means any.
    #[serde(default)]
    pub flavours: Vec<Uuid>,
    /// For job images: the JSON Schema of their parameters.
    #[schema(value_type = Option<Object>)]
    pub parameter_schema: Option<Value>,
    /// For the local runtime: `{"argv": ["program", "arg", ...], "env": {"NAME": "value"}}`.
    #[schema(value_type = Option<Object>)]
    pub local_command: Option<Value>,
}
