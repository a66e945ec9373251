//! `GET /api/v1/images` and `GET /api/v1/flavours`: what the caller's role may use.

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::db::{self, Flavour, Image};
use crate::auth::identity::CurrentUser;
use crate::error::Result;
use crate::state::AppState;
use crate::web::Json;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_images)).routes(routes!(list_flavours))
}

/// Enabled images the caller's role may launch.
#[utoipa::path(get, path = "/api/v1/images", tag = "catalogue",
    responses((status = 200, body = Vec<Image>), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_images(state: AppState, user: CurrentUser) -> Result<Json<Vec<Image>>> {
    Ok(Json(db::images(&state.db, user.role).await?))
}

/// Enabled flavours the caller's role may use, smallest first.
#[utoipa::path(get, path = "/api/v1/flavours", tag = "catalogue",
    responses((status = 200, body = Vec<Flavour>), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_flavours(state: AppState, user: CurrentUser) -> Result<Json<Vec<Flavour>>> {
    Ok(Json(db::flavours(&state.db, user.role).await?))
}
