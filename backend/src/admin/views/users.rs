//! The users page: search, change a role, enable or disable an account.

use askama::Template;
use serde::Deserialize;

use super::AdminPage;
use crate::admin::users::{self, UserRow};
use crate::audit::Actor;
use crate::auth::identity::Role;
use crate::state::AppState;
use crate::web::page::{render, see_other, Ctx, FormError, PageResult};
use crate::web::{Form, Path, Query};

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    ctx: Ctx,
    users: Vec<UserRow>,
    total: i64,
    q: String,
    error: Option<FormError>,
}

#[derive(Deserialize, Default)]
pub(super) struct UsersQuery {
    #[serde(default)]
    q: String,
}

async fn users_view(state: &AppState, ctx: Ctx, q: String, error: Option<FormError>) -> PageResult {
    let search = Some(q.trim()).filter(|s| !s.is_empty());
    let (users, total) = users::search(&state.db, search, None, None, 100, 0).await?;
    render(&UsersPage { ctx, users, total, q, error })
}

pub(super) async fn users_page(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    Query(query): Query<UsersQuery>,
) -> PageResult {
    users_view(&state, ctx, query.q, None).await
}

/// The role form: an unknown role is said on the page.
#[derive(Deserialize)]
pub(super) struct RoleForm {
    #[serde(default)]
    role: String,
}

pub(super) async fn set_role(
    state: AppState,
    AdminPage { user: me, ctx }: AdminPage,
    actor: Actor,
    Path(username): Path<String>,
    Form(form): Form<RoleForm>,
) -> PageResult {
    let Some(role) = Role::parse(form.role.trim()) else {
        return users_view(&state, ctx, String::new(), Some("Choose user, scientist or admin.".into())).await;
    };
    match users::set_role(&state.db, &me, &actor, &username, role).await {
        Ok(_) => Ok(see_other("/admin/users")),
        Err(err) => users_view(&state, ctx, String::new(), Some(FormError::of(err)?)).await,
    }
}

/// The enable/disable form: `enabled=true` enables, anything else disables.
#[derive(Deserialize)]
pub(super) struct EnabledForm {
    #[serde(default)]
    enabled: String,
}

pub(super) async fn set_enabled(
    state: AppState,
    AdminPage { user: me, ctx }: AdminPage,
    actor: Actor,
    Path(username): Path<String>,
    Form(form): Form<EnabledForm>,
) -> PageResult {
    let enabled = form.enabled.trim() == "true";
    match users::set_enabled(&state.db, &me, &actor, &username, enabled).await {
        Ok(_) => Ok(see_other("/admin/users")),
        Err(err) => users_view(&state, ctx, String::new(), Some(FormError::of(err)?)).await,
    }
}
