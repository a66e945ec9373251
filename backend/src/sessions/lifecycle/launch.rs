//! Launching, from the request to a session that answers. `launch` checks and records in
//! one transaction: the image and flavour the caller's role may use, an experiment of a
//! proposal the caller sees, job parameters valid against the image's schema, the quotas;
//! then the session row (in `starting`), its owner, its first events and the audit record.
//! Nothing is written when any check fails. `start` then waits for the session's turn (at
//! most `--max-starting` starts at once, first come first served, "queued: N ahead" in its
//! progress), records in PostgreSQL that its start begins, hands it to the runtime in the
//! background and watches it closely until it answers (the reconciler calls `start` too, for
//! a session nothing in this process is starting, e.g. after a restart).

use std::time::Duration;

use anyhow::Context;
use rand::distr::{Alphanumeric, SampleString};
use serde::Deserialize;
use sqlx::PgConnection;
use tokio::sync::OwnedSemaphorePermit;
use utoipa::ToSchema;
use uuid::Uuid;

use super::observe::{observe, Seen};
use super::state::{transition, SessionState};
use super::stop::finish_stop;
use crate::audit::Actor;
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};
use crate::quotas;
use crate::runtime::{DatasetMount, ImageSpec, Kind, LaunchSpec, Resources, SlurmPlacement};
use crate::sessions::db::{self, NewSession};
use crate::sessions::events;
use crate::state::AppState;

/// `POST /api/v1/sessions`: the ids come from `/api/v1/images`, `/api/v1/flavours` and
/// `/api/v1/proposals/{id}` (an experiment's `id`).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    pub image: Uuid,
    pub flavour: Uuid,
    pub experiment: Uuid,
    /// A web app's parameters, checked against its image's `parameter_schema` (e.g. the
    /// reconstruction studio's `dataset`); jobs take theirs at `POST /api/v1/jobs`.
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
}

/// Checks and records a launch, then starts it; returns the new session's id.
/// `parameters`: a job's (required), a web app's (checked against its schema, `{}` when
/// none are given), never a desktop's or notebook's.
pub async fn launch(
    state: &AppState,
    user: &CurrentUser,
    actor: &Actor,
    request: &LaunchRequest,
    parameters: Option<&serde_json::Value>,
) -> Result<Uuid> {
    let role = user.role.as_str();
    let mut tx = state.db.begin().await?;

    let image = db::launchable_image(&mut tx, request.image)
        .await?
        .ok_or_else(|| AppError::invalid("image", "no such image (see GET /api/v1/images)"))?;
    if !image.allowed_roles.iter().any(|r| r == role) {
        return Err(AppError::Forbidden(format!("the image {:?} is not available to the role {role}", image.name)));
    }
    let empty = serde_json::json!({});
    let parameters = match (image.kind.as_str(), parameters) {
        ("job", None) => {
            return Err(AppError::invalid(
                "image",
                format!("{:?} is a job: launch it with POST /api/v1/jobs", image.name),
            ))
        }
        ("webapp", given) => Some(given.unwrap_or(&empty)),
        ("job", given) => given,
        (kind, Some(_)) => {
            return Err(AppError::invalid(
                "parameters",
                format!("{:?} is a {kind}: it takes no parameters", image.name),
            ))
        }
        (_, None) => None,
    };

    let flavour = db::launchable_flavour(&mut tx, request.flavour)
        .await?
        .ok_or_else(|| AppError::invalid("flavour", "no such flavour (see GET /api/v1/flavours)"))?;
    if !flavour.allowed_roles.iter().any(|r| r == role) {
        return Err(AppError::Forbidden(format!("the flavour {:?} is not available to the role {role}", flavour.name)));
    }
    if !db::image_runs_on(&mut tx, request.image, request.flavour).await? {
        return Err(AppError::invalid(
            "flavour",
            format!("{:?} cannot run on the flavour {:?}", image.name, flavour.name),
        ));
    }

    let experiment = crate::proposals::db::visible_experiment(&mut *tx, user, request.experiment)
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
        experiment.proposal_id,
        quotas::Request { cpu_millis: flavour.cpu_millis, memory_mib: flavour.memory_mib, gpus: flavour.gpus },
    )
    .await?;
    let lifetime_minutes = limits
        .lifetime_minutes
        .map(i64::from)
        .unwrap_or_else(|| (state.config.sessions.lifetime.as_secs() / 60).max(1) as i64);

    let secret = new_secret();
    let id = db::insert(
        &mut tx,
        &NewSession {
            owner: user.id,
            experiment: request.experiment,
            image: request.image,
            flavour: request.flavour,
            kind: &image.kind,
            cpu_millis: flavour.cpu_millis,
            memory_mib: flavour.memory_mib,
            gpus: flavour.gpus,
            runtime: state.runtime.name(),
            secret: &secret,
            lifetime_minutes: lifetime_minutes.min(i64::from(i32::MAX)) as i32,
        },
    )
    .await?;
    if let Some(parameters) = parameters {
        let output = format!("~{}/{}", user.username, crate::runtime::job_output(id));
        let output = (image.kind == "job").then_some(output.as_str());
        db::insert_job(&mut tx, id, parameters, input_dataset, output).await?;
    }
    let what = format!(
        "{} on {} ({}) for {}/{}",
        image.name,
        flavour.name,
        describe(flavour.cpu_millis, flavour.memory_mib, flavour.gpus),
        experiment.proposal,
        experiment.code,
    );
    events::add(&mut tx, id, SessionState::Requested, &format!("Launch requested: {what}")).await?;
    events::add(&mut tx, id, SessionState::Starting, "queued").await?;
    crate::audit::record(
        &mut *tx,
        actor,
        if image.kind == "job" { "job.submit" } else { "session.launch" },
        "session",
        &id.to_string(),
        serde_json::json!({"image": image.name, "flavour": flavour.name, "proposal": experiment.proposal,
                           "experiment": experiment.code}),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("daas_session_launches_total", "kind" => image.kind.clone()).increment(1);
    start(state.clone(), id);
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
    db::dataset_of_experiment(conn, experiment, name)
        .await?
        .map(Some)
        .ok_or_else(|| AppError::invalid("parameters.dataset", format!("no dataset {name:?} in this experiment")))
}

/// Starts a session in the background (unless this process is starting it already), then
/// watches it closely until it runs, so a launch reaches `running` without waiting for the
/// next reconcile pass.
pub fn start(state: AppState, id: Uuid) {
    if !state.lifecycle.claim(id) {
        return;
    }
    tokio::spawn(async move {
        if let Err(err) = start_and_watch(&state, id).await {
            tracing::warn!(session.id = %id, error = format!("{err:#}"), "starting a session failed");
        }
        state.lifecycle.release(id);
    });
}

/// Where a launch's time goes, phase by phase, as `daas_launch_phase_seconds{phase}`:
/// `queued` (waiting for a start slot), `prepare` (reading the spec, marking the start),
/// `runtime` (the runtime's launch call), `record` (storing its handle), `answer` (until
/// the session first answers). `make bench-launch` prints their means.
struct Phases(std::time::Instant);

impl Phases {
    fn end(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        metrics::histogram!("daas_launch_phase_seconds", "phase" => phase).record((now - self.0).as_secs_f64());
        self.0 = now;
    }
}

/// How soon a starting session is first looked at again, and the longest pause between
/// looks (each pause half as long again as the last): a server that answers within 100 ms,
/// as most do on their own, is seen within 30 ms of it, not 150 ms later, and its start
/// slot goes to the next launch as soon.
const FIRST_LOOK: Duration = Duration::from_millis(20);
const LAST_LOOK: Duration = Duration::from_millis(250);

async fn start_and_watch(state: &AppState, id: Uuid) -> anyhow::Result<()> {
    let mut phases = Phases(std::time::Instant::now());
    // Held until the session answers or ends: its start shares the machine with the others.
    let Some(_permit) = wait_turn(state, id).await? else { return Ok(()) };
    phases.end("queued");
    let Some(spec) = load_spec(state, id).await? else { return Ok(()) };
    // In PostgreSQL before anything runs: a daas restarted after this looks for what the
    // runtime started (the runtime's launch adopts it) rather than taking it for unstarted.
    if !db::begin_start(&state.db, id).await? {
        return finish_stop(state, id, None).await;
    }
    phases.end("prepare");
    let handle = match state.runtime.launch(&spec).await {
        Ok(handle) => handle,
        Err(err) => {
            let mut tx = state.db.begin().await?;
            match db::lock_state(&mut tx, id).await? {
                Some(from) if SessionState::LAUNCHING.contains(&from) => {
                    transition(&mut tx, id, SessionState::Failed, &format!("could not start: {err:#}")).await?
                }
                _ => {}
            }
            tx.commit().await?;
            // Cancelled while it started: nothing runs to stop.
            return finish_stop(state, id, None).await;
        }
    };
    phases.end("runtime");
    if !db::store_handle(&state.db, id, &handle).await? {
        // Cancelled while it started: stop what was started.
        return finish_stop(state, id, Some(&handle)).await;
    }
    phases.end("record");
    let deadline = tokio::time::Instant::now() + state.config.sessions.startup_timeout + Duration::from_secs(1);
    let mut pause = FIRST_LOOK;
    while tokio::time::Instant::now() < deadline {
        let Some(live) = db::live(&state.db, id).await? else { return Ok(()) };
        match live.state {
            // Done as soon as it answers: its start slot goes to the next launch at once.
            SessionState::Starting => {
                if observe(state, &live, &handle).await.context("observing")? == Seen::Answers {
                    phases.end("answer");
                    return Ok(());
                }
            }
            SessionState::Stopping => return finish_stop(state, id, Some(&handle)).await,
            _ => return Ok(()),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(LAST_LOOK);
    }
    Ok(())
}

/// Waits for the session's turn to start (first come, first served), saying in its progress
/// how many wait before it; `None` when it stopped waiting to start meanwhile (the stop is
/// finished here).
async fn wait_turn(state: &AppState, id: Uuid) -> anyhow::Result<Option<OwnedSemaphorePermit>> {
    let mut ticket = state.lifecycle.queue(id);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut shown = None;
    loop {
        tokio::select! {
            biased;
            permit = ticket.turn() => return Ok(Some(permit)),
            _ = tick.tick() => {}
        }
        let ahead = ticket.ahead();
        let still_waiting = if shown == Some(ahead) {
            db::live(&state.db, id).await?.is_some_and(|l| SessionState::LAUNCHING.contains(&l.state))
        } else {
            let message = match ahead {
                0 => "queued: next to start".to_string(),
                n => format!("queued: {n} ahead"),
            };
            let mut tx = state.db.begin().await?;
            let set = db::set_progress(&mut tx, id, &message).await?;
            if set {
                events::add(&mut tx, id, SessionState::Starting, &message).await?;
            }
            tx.commit().await?;
            shown = Some(ahead);
            set
        };
        if !still_waiting {
            drop(ticket);
            finish_stop(state, id, None).await?;
            return Ok(None);
        }
    }
}

/// Everything the runtime needs, resolved from Postgres; `None` when the session is no
/// longer waiting to start.
async fn load_spec(state: &AppState, id: Uuid) -> anyhow::Result<Option<LaunchSpec>> {
    let Some(row) = db::spec(&state.db, id).await?.filter(|r| SessionState::LAUNCHING.contains(&r.state)) else {
        return Ok(None);
    };
    let uid = host_uid(state, id).await?;
    let expires_at = db::live(&state.db, id).await?.map(|l| l.expires_at);
    let datasets = db::datasets_of_experiment(&state.db, row.experiment_id).await?;
    let kind = Kind::parse(&row.kind).context("unknown kind")?;
    let folder = state.config.experiment_storage.folder(&row.beamline, &row.proposal, &row.experiment);
    let experiment_folder = folder.map_err(|why| anyhow::anyhow!("the experiment has no storage folder: {why}"))?;
    Ok(Some(LaunchSpec {
        session_id: id,
        kind,
        owner: row.owner,
        uid,
        image: ImageSpec { name: row.image, reference: row.reference, local_command: row.local_command },
        resources: Resources {
            cpu_millis: row.cpu_millis,
            memory_mib: row.memory_mib,
            gpus: row.gpus,
            gpu_type: row.gpu_type,
            disk_gib: row.disk_gib,
            node_selector: serde_json::from_value(row.node_selector).unwrap_or_default(),
            tolerations: serde_json::from_value(row.tolerations).unwrap_or_default(),
            slurm: SlurmPlacement {
                partition: row.slurm_partition,
                account: row.slurm_account,
                qos: row.slurm_qos,
                constraint: row.slurm_constraint,
            },
        },
        proposal: row.proposal,
        experiment: row.experiment,
        experiment_folder: experiment_folder.display().to_string(),
        datasets: datasets.into_iter().map(|(name, location)| DatasetMount { name, location }).collect(),
        secret: row.secret.unwrap_or_default(),
        base_url: base_url(id),
        parameters: row.parameters,
        expires_at,
    }))
}

/// Where a session's server answers under its origin (Jupyter's `base_url`).
pub fn base_url(id: Uuid) -> String {
    format!("/sessions/{id}/")
}

/// The host uid of a session's owner, allocated from the configured range at their first
/// launch (concurrent launches of one user get the same uid, of two users two uids).
async fn host_uid(state: &AppState, session: Uuid) -> anyhow::Result<u32> {
    let range = state.config.sessions.uids;
    let uid = db::owner_host_uid(&state.db, session, range.first).await?;
    match u32::try_from(uid) {
        Ok(uid) if uid <= range.last => Ok(uid),
        _ => anyhow::bail!("no host uid left in the configured range {}-{}", range.first, range.last),
    }
}

/// A fresh session secret: the VNC password daas logs in with (TigerVNC uses its first 8
/// characters) or the Jupyter token daas adds to each request.
pub fn new_secret() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}
