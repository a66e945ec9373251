//! Every route of the admin API, in one list.

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{audit_log, flavours, images, import, notices, quotas, sessions, usage, users};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(images::list_admin_images, images::create_image))
        .routes(routes!(images::get_admin_image, images::update_image, images::delete_image))
        .routes(routes!(flavours::list_admin_flavours, flavours::create_flavour))
        .routes(routes!(flavours::update_flavour, flavours::delete_flavour))
        .routes(routes!(quotas::list_quotas))
        .routes(routes!(quotas::set_quota, quotas::delete_quota))
        .routes(routes!(users::list_users))
        .routes(routes!(users::get_user))
        .routes(routes!(users::set_user_role))
        .routes(routes!(users::set_user_enabled))
        .routes(routes!(users::set_user_beamlines))
        .routes(routes!(users::revoke_user_token))
        .routes(routes!(sessions::list_all_sessions))
        .routes(routes!(sessions::stop_sessions))
        .routes(routes!(sessions::stop_session_as_admin))
        .routes(routes!(sessions::extend_session))
        .routes(routes!(usage::get_usage))
        .routes(routes!(usage::export_usage))
        .routes(routes!(usage::chart_usage))
        .routes(routes!(audit_log::list_audit_events))
        .routes(routes!(audit_log::export_audit_events))
        .routes(routes!(notices::list_admin_notices, notices::create_notice))
        .routes(routes!(notices::delete_notice))
        .routes(routes!(notices::list_notices))
        .routes(routes!(import::preview_import))
        .routes(routes!(import::apply_import))
}
