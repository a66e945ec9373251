//! The proposal import page: paste an export, preview what it would change, apply it.

use askama::Template;
use serde::Deserialize;

use super::AdminPage;
use crate::admin::import::{self, ImportResult};
use crate::audit::Actor;
use crate::proposals::import::Format;
use crate::state::AppState;
use crate::web::page::{render, Ctx, FormError, PageResult};
use crate::web::Form;

#[derive(Template)]
#[template(path = "admin/import.html")]
struct ImportPage {
    ctx: Ctx,
    text: String,
    format: String,
    result: Option<ImportResult>,
    error: Option<FormError>,
}

pub(super) async fn import_page(AdminPage { ctx, .. }: AdminPage) -> PageResult {
    render(&ImportPage { ctx, text: String::new(), format: "json".into(), result: None, error: None })
}

/// The import form: the export as pasted (untrimmed), its format, and which button.
#[derive(Deserialize)]
pub(super) struct ImportForm {
    #[serde(default)]
    text: String,
    /// `csv`; anything else is JSON.
    #[serde(default)]
    format: String,
    /// `apply`; anything else previews.
    #[serde(default)]
    action: String,
}

/// Previews (`action=preview`) or applies an export pasted into the form.
pub(super) async fn import_proposals(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Form(form): Form<ImportForm>,
) -> PageResult {
    let csv = form.format.trim() == "csv";
    let apply = form.action.trim() == "apply";
    let parsed = import::parse_text(&form.text, if csv { Format::Csv } else { Format::Json });
    let outcome = match parsed {
        Ok(proposals) => import::run(&state.db, apply.then_some(&actor), &proposals).await,
        Err(err) => Err(err),
    };
    let (result, error) = match outcome {
        Ok(result) => (Some(result), None),
        Err(err) => (None, Some(FormError::of(err)?)),
    };
    let format = if csv { "csv" } else { "json" };
    render(&ImportPage { ctx, text: form.text, format: format.into(), result, error })
}
