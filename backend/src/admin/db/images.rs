//! The image catalogue's queries.

use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::admin::images::{AdminImage, ImageInput};
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

/// Stores a checked new image; fails on `images_name_key` when the name is taken.
pub async fn insert(tx: &mut PgConnection, i: &ImageInput, protocol: &str) -> sqlx::Result<Uuid> {
    sqlx::query_scalar(
        "insert into images (name, kind, reference, protocol, default_cpu_millis, default_memory_mib, default_gpus,
                             default_disk_gib, enabled, description, icon, allowed_roles, parameter_schema, local_command)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) returning id",
    )
    .bind(&i.name)
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
    .fetch_one(tx)
    .await
}

/// Stores an image's checked settings; fails on `images_name_key` when the name is taken.
pub async fn update(tx: &mut PgConnection, id: Uuid, i: &ImageInput, protocol: &str) -> sqlx::Result<()> {
    sqlx::query(
        "update images set name = $2, kind = $3, reference = $4, protocol = $5, default_cpu_millis = $6,
             default_memory_mib = $7, default_gpus = $8, default_disk_gib = $9, enabled = $10, description = $11,
             icon = $12, allowed_roles = $13, parameter_schema = $14, local_command = $15, updated_at = now()
         where id = $1",
    )
    .bind(id)
    .bind(&i.name)
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
    .execute(tx)
    .await?;
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
