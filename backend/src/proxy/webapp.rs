//! What daas asks of a web app itself (a session of kind `webapp`, served by the notebook
//! proxy): "Use these parameters". The reconstruction studio's page sends a person to
//! `/sessions/{id}/use-parameters` on the portal; daas reads the parameters the web app
//! holds now (`GET {base}api/parameters`: `{"image": <a job image's name>, "parameters":
//! {...}}`), records them as an event of the session, and opens that job's Launch dialog
//! with them filled in, on the session's experiment. Nothing is launched until the person
//! presses Launch there.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{db, upstream};
use crate::audit::Actor;
use crate::error::AppError;
use crate::sessions::lifecycle::SessionState;
use crate::state::AppState;
use crate::web::page::{see_other, PageResult, PageUser};
use crate::web::Path;

pub fn routes() -> Router<AppState> {
    Router::new().route("/sessions/{id}/use-parameters", get(use_parameters))
}

/// What a web app answers at `api/parameters`.
#[derive(Deserialize)]
struct Offered {
    /// The name of the job image the parameters are for.
    image: String,
    parameters: Map<String, Value>,
}

/// Most bytes daas reads of a web app's answer.
const MAX_ANSWER: usize = 64 * 1024;

/// `GET {path}` of the web app at `endpoint`, its JSON; an error says what went wrong.
async fn get_json<T: serde::de::DeserializeOwned>(endpoint: &str, path: &str) -> anyhow::Result<T> {
    let stream = upstream::connect(endpoint).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::get(path).header("host", "localhost").body(Body::empty())?;
    let response = sender.send_request(request).await?;
    anyhow::ensure!(response.status() == StatusCode::OK, "it answered {}", response.status());
    let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

/// A parameter as the Launch dialog's field holds it.
fn field_value(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), String::from)
}

async fn use_parameters(
    state: AppState,
    PageUser { user, .. }: PageUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> PageResult {
    let session = crate::sessions::db::find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?;
    if session.kind != "webapp" {
        return Err(AppError::NotFound.into());
    }
    if !matches!(session.role.as_deref(), Some("owner" | "user" | "support")) {
        return Err(AppError::Forbidden("your role lets you watch, not launch with these parameters".into()).into());
    }
    let Some((_, endpoint, _)) = db::route(&state.db, id).await?.filter(|_| session.state == SessionState::Running)
    else {
        return Err(AppError::Conflict(format!("the {} is not running", session.image)).into());
    };
    let path = format!("{}api/parameters", crate::sessions::lifecycle::launch::base_url(id));
    let offered: Offered = get_json(&endpoint, &path).await.map_err(|err| {
        tracing::info!(session.id = %id, error = format!("{err:#}"), "no parameters from the web app");
        AppError::Conflict(format!("{} did not say which parameters to use ({err:#})", session.image))
    })?;
    let image =
        crate::catalogue::db::job_image_named(&state.db, &offered.image, user.role).await?.ok_or_else(|| {
            AppError::Conflict(format!(
                "{} names the image {:?}, which you cannot launch",
                session.image, offered.image
            ))
        })?;
    let experiment = crate::sessions::db::experiment_of(&state.db, id).await?;
    let (proposal, _) = crate::sessions::db::proposal_and_beamline(&state.db, experiment).await?;

    let query = {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("image", &image.to_string()).append_pair("experiment", &experiment.to_string());
        for (name, value) in &offered.parameters {
            query.append_pair(&format!("param.{name}"), &field_value(value));
        }
        query.finish()
    };
    let said: Vec<String> =
        offered.parameters.iter().map(|(name, value)| format!("{name} {}", field_value(value))).collect();
    let mut tx = state.db.begin().await?;
    let message = format!("{} took these parameters to {}: {}", user.username, offered.image, said.join(", "));
    crate::sessions::events::add_now(&mut tx, id, &message).await?;
    let details = serde_json::json!({"image": offered.image, "parameters": offered.parameters});
    crate::audit::record(&mut *tx, &actor, "session.parameters", "session", &id.to_string(), details).await?;
    tx.commit().await?;
    let identifier = crate::web::page::path_segment(&proposal);
    Ok(see_other(&format!("/proposals/{identifier}/launch?{query}")))
}
