//! `GET /api/v1/quota`: the caller's limits and what they use now (the Launch dialog's
//! "quota left").

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Limits, Usage};
use crate::auth::identity::CurrentUser;
use crate::error::Result;
use crate::state::AppState;
use crate::web::Json;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_quota))
}

#[derive(Serialize, ToSchema)]
pub struct Quota {
    /// The caller's effective limits (role defaults with their own overrides); null is
    /// unlimited, or for the minutes the server's default.
    pub limits: Limits,
    /// Sessions of the caller that have not ended, and what they hold.
    pub used: Usage,
}

/// The caller's quota and usage.
#[utoipa::path(get, path = "/api/v1/quota", tag = "sessions",
    responses((status = 200, body = Quota), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
pub async fn get_quota(state: AppState, user: CurrentUser) -> Result<Json<Quota>> {
    let mut conn = state.db.acquire().await?;
    let limits = super::db::for_user(&mut conn, user.id, user.role.as_str()).await?;
    let used = super::db::usage_of_user(&mut conn, user.id).await?;
    Ok(Json(Quota { limits, used }))
}
