//! The "API tokens" page: create (shown once), list, revoke.

use askama::Template;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use uuid::Uuid;

use super::db::{self, CreatedToken, NewToken};
use crate::audit::Actor;
use crate::state::AppState;
use crate::web::page::{render, see_other, Ctx, FormError, PageResult, PageUser};
use crate::web::{Form, Path, Query};

pub fn routes() -> Router<AppState> {
    Router::new().route("/tokens", get(tokens_page).post(create_token)).route("/tokens/{id}/revoke", post(revoke_token))
}

const WHEN: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day] [hour]:[minute]");

pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub created: String,
    pub last_used: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "tokens/page.html")]
struct TokensPage {
    ctx: Ctx,
    /// Whose tokens (an admin may look at anyone's).
    owner: String,
    own: bool,
    tokens: Vec<TokenRow>,
    created: Option<CreatedToken>,
    error: Option<FormError>,
    /// The form as typed (after a refusal), else empty and 30 days.
    name: String,
    expires_in_days: String,
}

#[derive(Deserialize)]
struct Whose {
    user: Option<String>,
}

async fn page(
    state: &AppState,
    ctx: Ctx,
    user: &crate::auth::identity::CurrentUser,
    whose: Option<&str>,
    created: Option<CreatedToken>,
    refused: Option<(FormError, &CreateForm)>,
) -> PageResult {
    let (owner_id, owner) = db::owner(&state.db, user, whose).await?;
    let fmt = |t: time::OffsetDateTime| t.format(WHEN).unwrap_or_default();
    let tokens = db::list(&state.db, owner_id)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name,
            created: fmt(t.created_at),
            last_used: t.last_used_at.map_or_else(|| "never".into(), fmt),
            expires: t.expires_at.map_or_else(|| "never".into(), fmt),
        })
        .collect();
    let own = owner_id == user.id;
    let (error, name, expires_in_days) = match refused {
        Some((error, typed)) => (Some(error), typed.name.clone(), typed.expires_in_days.clone()),
        None => (None, String::new(), "30".into()),
    };
    let status = if error.is_some() { axum::http::StatusCode::BAD_REQUEST } else { axum::http::StatusCode::OK };
    let mut response = render(&TokensPage { ctx, owner, own, tokens, created, error, name, expires_in_days })?;
    *response.status_mut() = status;
    Ok(response)
}

async fn tokens_page(state: AppState, PageUser { user, ctx }: PageUser, Query(w): Query<Whose>) -> PageResult {
    page(&state, ctx, &user, w.user.as_deref(), None, None).await
}

#[derive(Deserialize)]
struct CreateForm {
    name: String,
    /// Days, or empty for no expiry.
    #[serde(default)]
    expires_in_days: String,
    user: Option<String>,
}

async fn create_token(
    state: AppState,
    PageUser { user, ctx }: PageUser,
    actor: Actor,
    Form(form): Form<CreateForm>,
) -> PageResult {
    let whose = form.user.as_deref().filter(|u| !u.is_empty());
    let expires_in_days = match form.expires_in_days.trim() {
        "" => None,
        days => match days.parse() {
            Ok(days) => Some(days),
            Err(_) => {
                let error = FormError::from("Expiry must be a number of days.").on("expires_in_days");
                return page(&state, ctx, &user, whose, None, Some((error, &form))).await;
            }
        },
    };
    let new = NewToken { name: form.name.clone(), expires_in_days, user: whose.map(String::from) };
    match db::create(&state.db, &actor, &user, &new).await {
        Ok(created) => page(&state, ctx, &user, whose, Some(created), None).await,
        Err(err @ crate::error::AppError::Invalid { .. }) => {
            page(&state, ctx, &user, whose, None, Some((FormError::of(err)?, &form))).await
        }
        Err(err) => Err(err.into()),
    }
}

async fn revoke_token(
    state: AppState,
    PageUser { user, .. }: PageUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> PageResult {
    db::revoke(&state.db, &actor, &user, id, None).await?;
    Ok(see_other("/tokens"))
}
