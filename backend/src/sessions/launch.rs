//! A launch, in one transaction: the image and flavour the caller's role may use, an
//! experiment of a proposal the caller sees, job parameters valid against the image's
//! schema, the quotas; then the session row (in `starting`), its owner, its first events
//! and the audit record. Nothing is written when any check fails.

use rand::distr::{Alphanumeric, SampleString};
use serde::Deserialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::Actor;
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};
use crate::quotas;
use crate::state::AppState;

/// `POST /api/v1/sessions`: the ids come from `/api/v1/images`, `/api/v1/flavours` and
/// `/api/v1/proposals/{id}` (an experiment's `id`).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    pub image: Uuid,
    pub flavour: Uuid,
    pub experiment: Uuid,
}

#[derive(sqlx::FromRow)]
struct ImageRow {
    name: String,
    kind: String,
    enabled: bool,
    allowed_roles: Vec<String>,
    parameter_schema: Option<serde_json::Value>,
}

#[derive(sqlx::FromRow)]
struct FlavourRow {
    name: String,
    cpu_millis: i32,
    memory_mib: i32,
    gpus: i32,
    enabled: bool,
    allowed_roles: Vec<String>,
}

/// Checks and records a launch; returns the new session's id. `parameters` is `Some` for
/// a job (and only then).
pub async fn launch(
    state: &AppState,
    user: &CurrentUser,
    actor: &Actor,
    request: &LaunchRequest,
    parameters: Option<&serde_json::Value>,
) -> Result<Uuid> {
    let role = user.role.as_str();
    let mut tx = state.db.begin().await?;

    let image = sqlx::query_as::<_, ImageRow>(
        "select name, kind, enabled, allowed_roles, parameter_schema from images where id = $1",
    )
    .bind(request.image)
    .fetch_optional(&mut *tx)
    .await?
    .filter(|i| i.enabled)
    .ok_or_else(|| AppError::invalid("image", "no such image (see GET /api/v1/images)"))?;
    if !image.allowed_roles.iter().any(|r| r == role) {
        return Err(AppError::Forbidden(format!("the image {:?} is not available to the role {role}", image.name)));
    }
    match (image.kind.as_str(), parameters.is_some()) {
        ("job", false) => {
            return Err(AppError::invalid(
                "image",
                format!("{:?} is a job: launch it with POST /api/v1/jobs", image.name),
            ))
        }
        (kind, true) if kind != "job" => {
            return Err(AppError::invalid("image", format!("{:?} is a {kind}, not a job", image.name)))
        }
        _ => {}
    }

    let flavour = sqlx::query_as::<_, FlavourRow>(
        "select name, cpu_millis, memory_mib, gpus, enabled, allowed_roles from flavours where id = $1",
    )
    .bind(request.flavour)
    .fetch_optional(&mut *tx)
    .await?
    .filter(|f| f.enabled)
    .ok_or_else(|| AppError::invalid("flavour", "no such flavour (see GET /api/v1/flavours)"))?;
    if !flavour.allowed_roles.iter().any(|r| r == role) {
        return Err(AppError::Forbidden(format!("the flavour {:?} is not available to the role {role}", flavour.name)));
    }
    let refused: bool = sqlx::query_scalar(
        "select exists (select 1 from image_flavours where image_id = $1)
            and not exists (select 1 from image_flavours where image_id = $1 and flavour_id = $2)",
    )
    .bind(request.image)
    .bind(request.flavour)
    .fetch_one(&mut *tx)
    .await?;
    if refused {
        return Err(AppError::invalid(
            "flavour",
            format!("{:?} cannot run on the flavour {:?}", image.name, flavour.name),
        ));
    }

    let (experiment_code, proposal_id, proposal): (String, Uuid, String) = sqlx::query_as(&format!(
        "select e.code, p.id, p.identifier from experiments e join proposals p on p.id = e.proposal_id
         where e.id = $3 and {}",
        crate::proposals::db::VISIBLE
    ))
    .bind(user.id)
    .bind(role)
    .bind(request.experiment)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| AppError::invalid("experiment", "no such experiment in your proposals"))?;

    let input_dataset = match parameters {
        Some(parameters) => {
            validate_parameters(&mut tx, image.parameter_schema.as_ref(), parameters, request.experiment).await?
        }
        None => None,
    };

    let limits = quotas::check_launch(
        &mut tx,
        user.id,
        role,
        proposal_id,
        quotas::Request { cpu_millis: flavour.cpu_millis, memory_mib: flavour.memory_mib, gpus: flavour.gpus },
    )
    .await?;
    let lifetime_minutes = limits
        .lifetime_minutes
        .map(i64::from)
        .unwrap_or_else(|| (state.config.sessions.lifetime.as_secs() / 60).max(1) as i64);

    let secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let id: Uuid = sqlx::query_scalar(
        "insert into sessions (owner_id, experiment_id, image_id, flavour_id, kind, state, cpu_millis, memory_mib, gpus,
                               runtime, secret, progress, expires_at)
         values ($1, $2, $3, $4, $5, 'starting', $6, $7, $8, $9, $10, 'queued', now() + make_interval(mins => $11::int))
         returning id",
    )
    .bind(user.id)
    .bind(request.experiment)
    .bind(request.image)
    .bind(request.flavour)
    .bind(&image.kind)
    .bind(flavour.cpu_millis)
    .bind(flavour.memory_mib)
    .bind(flavour.gpus)
    .bind(state.runtime.name())
    .bind(&secret)
    .bind(lifetime_minutes.min(i64::from(i32::MAX)) as i32)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("insert into session_members (session_id, user_id, role) values ($1, $2, 'owner')")
        .bind(id)
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
    if let Some(parameters) = parameters {
        sqlx::query(
            "insert into jobs (session_id, parameters, input_dataset_id, output_location, log_location)
             values ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(parameters)
        .bind(input_dataset)
        .bind(format!("~{}/{}", user.username, crate::runtime::local::LocalRuntime::job_output(id)))
        .bind(format!("/api/v1/jobs/{id}/logs"))
        .execute(&mut *tx)
        .await?;
    }
    let what = format!(
        "{} on {} ({}) for {proposal}/{experiment_code}",
        image.name,
        flavour.name,
        describe(flavour.cpu_millis, flavour.memory_mib, flavour.gpus)
    );
    super::events::add(&mut tx, id, "requested", &format!("Launch requested: {what}")).await?;
    super::events::add(&mut tx, id, "starting", "queued").await?;
    crate::audit::record(
        &mut *tx,
        actor,
        if parameters.is_some() { "job.submit" } else { "session.launch" },
        "session",
        &id.to_string(),
        serde_json::json!({"image": image.name, "flavour": flavour.name, "proposal": proposal, "experiment": experiment_code}),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("daas_session_launches_total", "kind" => image.kind.clone()).increment(1);
    crate::reconciler::start_session(state.clone(), id);
    Ok(id)
}

fn describe(cpu_millis: i32, memory_mib: i32, gpus: i32) -> String {
    let mut s = format!("{} CPU, {} GiB", cpu_millis as f64 / 1000.0, memory_mib as f64 / 1024.0);
    if gpus > 0 {
        s.push_str(&format!(", {gpus} GPU"));
    }
    s
}

/// Validates job parameters against the image's JSON Schema; a 400 names the parameter at
/// fault (`parameters.algorithm`). A `dataset` parameter must name a dataset of the
/// experiment: it becomes the job's input dataset.
async fn validate_parameters(
    conn: &mut PgConnection,
    schema: Option<&serde_json::Value>,
    parameters: &serde_json::Value,
    experiment: Uuid,
) -> Result<Option<Uuid>> {
    if !parameters.is_object() {
        return Err(AppError::invalid("parameters", "must be a JSON object"));
    }
    if let Some(schema) = schema {
        let validator = jsonschema::validator_for(schema)
            .map_err(|e| anyhow::anyhow!("the image's parameter schema is not valid: {e}"))?;
        let first = validator.iter_errors(parameters).next();
        if let Some(error) = first {
            let mut field = String::from("parameters");
            for segment in error.instance_path().as_str().split('/').filter(|s| !s.is_empty()) {
                field.push('.');
                field.push_str(&segment.replace("~1", "/").replace("~0", "~"));
            }
            match error.kind() {
                jsonschema::error::ValidationErrorKind::Required { property } => {
                    field.push('.');
                    field.push_str(property.as_str().unwrap_or_default());
                }
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    if let Some(name) = unexpected.first() {
                        field.push('.');
                        field.push_str(name);
                    }
                }
                _ => {}
            }
            return Err(AppError::invalid(field, error.to_string()));
        }
    }
    let Some(name) = parameters.get("dataset").and_then(|d| d.as_str()) else { return Ok(None) };
    let dataset: Option<Uuid> = sqlx::query_scalar("select id from datasets where experiment_id = $1 and name = $2")
        .bind(experiment)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    dataset
        .map(Some)
        .ok_or_else(|| AppError::invalid("parameters.dataset", format!("no dataset {name:?} in this experiment")))
}
