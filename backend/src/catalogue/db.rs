//! Queries on the catalogue, with its one access rule: a role sees the enabled images and
//! flavours whose `allowed_roles` name it.

use serde::Serialize;
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::identity::Role;

/// An image as a launcher sees it.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Image {
    pub id: Uuid,
    pub name: String,
    /// `desktop`, `notebook` or `job`.
    pub kind: String,
    /// `vnc`, `http` or `none`.
    pub protocol: String,
    pub description: String,
    pub icon: Option<String>,
    pub default_cpu_millis: i32,
    pub default_memory_mib: i32,
    pub default_gpus: i32,
    pub default_disk_gib: i32,
    /// The flavours this image may run on; empty means any the caller may use.
    pub flavours: Vec<Uuid>,
    /// For jobs: the JSON Schema of the parameters.
    #[schema(value_type = Option<Object>)]
    pub parameter_schema: Option<serde_json::Value>,
}

/// The enabled images `role` may launch, by kind and name.
pub async fn images(db: impl PgExecutor<'_>, role: Role) -> sqlx::Result<Vec<Image>> {
    sqlx::query_as(
        "select i.id, i.name, i.kind, i.protocol, i.description, i.icon, i.default_cpu_millis,
                i.default_memory_mib, i.default_gpus, i.default_disk_gib, i.parameter_schema,
                array(select f.flavour_id from image_flavours f where f.image_id = i.id order by f.flavour_id) as flavours
         from images i where i.enabled and $1 = any(i.allowed_roles) order by i.kind, i.name",
    )
    .bind(role.as_str())
    .fetch_all(db)
    .await
}

/// The id of the enabled job image called `name` that `role` may launch.
pub async fn job_image_named(db: impl PgExecutor<'_>, name: &str, role: Role) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("select id from images where name = $1 and kind = 'job' and enabled and $2 = any(allowed_roles)")
        .bind(name)
        .bind(role.as_str())
        .fetch_optional(db)
        .await
}

/// A flavour as a launcher sees it.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Flavour {
    pub id: Uuid,
    pub name: String,
    pub cpu_millis: i32,
    pub memory_mib: i32,
    pub gpus: i32,
    pub gpu_type: Option<String>,
    pub disk_gib: i32,
}

/// The enabled flavours `role` may use, smallest first.
pub async fn flavours(db: impl PgExecutor<'_>, role: Role) -> sqlx::Result<Vec<Flavour>> {
    sqlx::query_as(
        "select id, name, cpu_millis, memory_mib, gpus, gpu_type, disk_gib from flavours
         where enabled and $1 = any(allowed_roles) order by gpus, cpu_millis, memory_mib, name",
    )
    .bind(role.as_str())
    .fetch_all(db)
    .await
}
