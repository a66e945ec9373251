//! `/api/v1/me`: the caller, as daas knows them.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::identity::CurrentUser;
use crate::error::Result;
use crate::state::AppState;
use crate::web::Json;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_me))
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub id: uuid::Uuid,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub affiliation: Option<String>,
    /// `user`, `scientist` or `admin`.
    pub role: String,
    /// The beamlines a scientist looks after.
    pub beamlines: Vec<String>,
}

/// The caller.
#[utoipa::path(get, path = "/api/v1/me", tag = "users",
    responses((status = 200, body = Me), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
async fn get_me(state: AppState, user: CurrentUser) -> Result<Json<Me>> {
    let (email, affiliation) = crate::auth::users::contact(&state.db, user.id).await?;
    let beamlines = crate::beamlines::db::of_user(&state.db, &user).await?;
    Ok(Json(Me {
        id: user.id,
        username: user.username,
        display_name: user.display_name,
        email,
        affiliation,
        role: user.role.as_str().to_owned(),
        beamlines,
    }))
}
