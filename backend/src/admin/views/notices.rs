//! The notices page (post a notice for a few hours, delete one) and the banner every
//! page's layout loads.

use askama::Template;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{number, refused_page, when, AdminPage, Refusal};
use crate::admin::notices::{self, Notice, NoticeInput};
use crate::audit::Actor;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::page::{render, see_other, Ctx, FormError, PageResult};
use crate::web::{Form, MaybeUser, Path};

pub struct NoticeRow {
    pub id: Uuid,
    pub message: String,
    pub level: String,
    pub starts: String,
    pub expires: String,
    pub showing: bool,
}

#[derive(Template)]
#[template(path = "admin/notices.html")]
struct NoticesPage {
    ctx: Ctx,
    notices: Vec<NoticeRow>,
    error: Option<FormError>,
    /// The form as typed (after a refusal).
    typed: NoticeForm,
}

async fn notices_view(state: &AppState, ctx: Ctx, refused: Option<(Refusal, NoticeForm)>) -> PageResult {
    let now = OffsetDateTime::now_utc();
    let notices = notices::recent(&state.db)
        .await?
        .into_iter()
        .map(|n: Notice| NoticeRow {
            showing: n.starts_at <= now && n.expires_at > now,
            id: n.id,
            message: n.message,
            level: n.level,
            starts: when(n.starts_at),
            expires: when(n.expires_at),
        })
        .collect();
    let (refused, typed) = match refused {
        Some((refusal, typed)) => (Some(refusal), typed),
        None => (None, NoticeForm { message: String::new(), level: "info".into(), hours: "24".into() }),
    };
    refused_page(refused, |error| render(&NoticesPage { ctx, notices, error, typed }))
}

pub(super) async fn notices_page(state: AppState, AdminPage { ctx, .. }: AdminPage) -> PageResult {
    notices_view(&state, ctx, None).await
}

/// The notice form, as typed.
#[derive(Deserialize)]
pub struct NoticeForm {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub level: String,
    /// How long it shows; 24 when empty.
    #[serde(default)]
    pub hours: String,
}

pub(super) async fn create_notice(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Form(form): Form<NoticeForm>,
) -> PageResult {
    let hours = number("hours", &form.hours).ok().map(|h| h.unwrap_or(24));
    let Some(hours) = hours.filter(|h| (1..=24 * 365).contains(h)) else {
        let refusal = Refusal::of(AppError::invalid("hours", "show it for 1 hour to a year"))?;
        return notices_view(&state, ctx, Some((refusal, form))).await;
    };
    let input = NoticeInput {
        message: form.message.trim().to_owned(),
        level: Some(form.level.trim().to_owned()).filter(|l| !l.is_empty()),
        starts_at: None,
        expires_at: OffsetDateTime::now_utc() + time::Duration::hours(hours.into()),
    };
    match notices::create(&state.db, &actor, input).await {
        Ok(_) => Ok(see_other("/admin/notices")),
        Err(err) => {
            let mut refusal = Refusal::of(err)?;
            // The API's end is the form's duration.
            if refusal.message.field.as_deref() == Some("expires_at") {
                refusal.message = refusal.message.on("hours");
            }
            notices_view(&state, ctx, Some((refusal, form))).await
        }
    }
}

pub(super) async fn delete_notice(
    state: AppState,
    _admin: AdminPage,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> PageResult {
    notices::delete(&state.db, &actor, id).await?;
    Ok(see_other("/admin/notices"))
}

#[derive(Template)]
#[template(path = "notices/_banner.html")]
struct Banner {
    notices: Vec<Notice>,
}

/// The notices showing now, as a fragment the layout loads (empty for visitors).
pub(super) async fn notices_banner(state: AppState, MaybeUser(user): MaybeUser) -> PageResult {
    let notices = if user.is_some() { notices::active(&state.db).await? } else { Vec::new() };
    render(&Banner { notices })
}
