//! `AdminUser`: the caller, when they hold the admin role. Every `/api/v1/admin/...`
//! handler takes it, so a route cannot forget the check.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::identity::CurrentUser;
use crate::error::AppError;
use crate::state::AppState;

/// A logged-in admin. Extracting it answers 401 when nobody is logged in and 403 to a
/// logged-in user of another role (admin routes name no object a user could own, so a
/// 403 leaks nothing).
#[derive(Clone, Debug)]
pub struct AdminUser(pub CurrentUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if !user.is_admin() {
            return Err(AppError::Forbidden("this needs the admin role".into()));
        }
        Ok(AdminUser(user))
    }
}
