//! `GET /api/v1/images` and `GET /api/v1/flavours`: what the caller's role may use.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::identity::CurrentUser;
use crate::error::Result;
use crate::state::AppState;
use crate::web::Json;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_images)).routes(routes!(list_flavours))
}

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

/// Enabled images the caller's role may launch.
#[utoipa::path(get, path = "/api/v1/images", tag = "catalogue",
    responses((status = 200, body = Vec<Image>), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_images(state: AppState, user: CurrentUser) -> Result<Json<Vec<Image>>> {
    let images = sqlx::query_as(
        "select i.id, i.name, i.kind, i.protocol, i.description, i.icon, i.default_cpu_millis,
                i.default_memory_mib, i.default_gpus, i.default_disk_gib, i.parameter_schema,
                array(select f.flavour_id from image_flavours f where f.image_id = i.id order by f.flavour_id) as flavours
         from images i where i.enabled and $1 = any(i.allowed_roles) order by i.kind, i.name",
    )
    .bind(user.role.as_str())
    .fetch_all(&state.db)
    .await?;
    Ok(Json(images))
}

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

/// Enabled flavours the caller's role may use, smallest first.
#[utoipa::path(get, path = "/api/v1/flavours", tag = "catalogue",
    responses((status = 200, body = Vec<Flavour>), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_flavours(state: AppState, user: CurrentUser) -> Result<Json<Vec<Flavour>>> {
    let flavours = sqlx::query_as(
        "select id, name, cpu_millis, memory_mib, gpus, gpu_type, disk_gib from flavours
         where enabled and $1 = any(allowed_roles) order by gpus, cpu_millis, memory_mib, name",
    )
    .bind(user.role.as_str())
    .fetch_all(&state.db)
    .await?;
    Ok(Json(flavours))
}
