//! `GET/POST /api/v1/tokens`, `DELETE /api/v1/tokens/{id}`.

use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::db::{self, CreatedToken, NewToken, Token};
use crate::audit::Actor;
use crate::auth::identity::CurrentUser;
use crate::error::Result;
use crate::state::AppState;
use crate::web::{Json, Path, Query};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_tokens, create_token)).routes(routes!(revoke_token))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WhoseParams {
    /// Admins only: another user's tokens.
    user: Option<String>,
}

/// The caller's live tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(WhoseParams),
    responses((status = 200, body = Vec<Token>), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_tokens(state: AppState, user: CurrentUser, Query(q): Query<WhoseParams>) -> Result<Json<Vec<Token>>> {
    let (owner, _) = db::owner(&state.db, &user, q.user.as_deref()).await?;
    Ok(Json(db::list(&state.db, owner).await?))
}

/// Creates a token; its secret is in this answer and nowhere else, ever.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_token(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Json(new): Json<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>)> {
    Ok((StatusCode::CREATED, Json(db::create(&state.db, &actor, &user, &new).await?)))
}

/// Revokes a token at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_token(
    state: AppState,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    db::revoke(&state.db, &actor, &user, id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}
