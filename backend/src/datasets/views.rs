//! The "link a dataset" page of an experiment, for its beamline's scientists and admins.

use askama::Template;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::routes::{link, LinkInput};
use crate::audit::Actor;
use crate::error::AppError;
use crate::proposals;
use crate::state::AppState;
use crate::web::page::{path_segment, render, see_other, Ctx, FormError, PageError, PageResult, PageUser};
use crate::web::{Form, Path};

pub fn routes() -> Router<AppState> {
    Router::new().route("/proposals/{id}/experiments/{code}/datasets/new", get(link_page).post(link_dataset))
}

#[derive(Template)]
#[template(path = "datasets/link.html")]
struct LinkPage {
    ctx: Ctx,
    proposal: String,
    experiment: String,
    location: String,
    name: String,
    metadata: String,
    error: Option<FormError>,
}

async fn link_page(
    state: AppState,
    PageUser { ctx, user }: PageUser,
    Path((proposal, experiment)): Path<(String, String)>,
) -> PageResult {
    // Starts the field at the experiment's storage folder, where the data must be.
    let found = proposals::db::visible_experiment_by_code(&state.db, &user, &proposal, &experiment).await?;
    let location = found
        .and_then(|e| state.config.experiment_storage.folder(&e.beamline, &proposal, &experiment).ok())
        .map(|folder| format!("{}/", folder.display()))
        .unwrap_or_default();
    render(&LinkPage { ctx, proposal, experiment, location, name: String::new(), metadata: "{}".into(), error: None })
}

#[derive(Deserialize)]
struct LinkForm {
    location: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    metadata: String,
}

async fn link_dataset(
    state: AppState,
    PageUser { user, ctx }: PageUser,
    actor: Actor,
    Path((proposal, experiment)): Path<(String, String)>,
    Form(form): Form<LinkForm>,
) -> PageResult {
    let metadata = match form.metadata.trim() {
        "" => Ok(None),
        text => {
            serde_json::from_str(text).map(Some).map_err(|e| AppError::invalid("metadata", format!("is not JSON: {e}")))
        }
    };
    let result = match metadata {
        Ok(metadata) => {
            let name = Some(form.name.trim().to_owned()).filter(|n| !n.is_empty());
            let input = LinkInput { location: form.location.clone(), name, metadata };
            link(&state, &user, &actor, &proposal, &experiment, input).await.map(|_| ())
        }
        Err(err) => Err(err),
    };
    let (status, error) = match result {
        Ok(()) => return Ok(see_other(&format!("/proposals/{}", path_segment(&proposal)))),
        Err(err @ (AppError::Invalid { .. } | AppError::Conflict(_))) => (err.status(), FormError::of(err)?),
        Err(err) => return Err(PageError(err)),
    };
    let mut response = render(&LinkPage {
        ctx,
        proposal,
        experiment,
        location: form.location,
        name: form.name,
        metadata: form.metadata,
        error: Some(error),
    })?;
    *response.status_mut() = status;
    Ok(response)
}
