//! The reconciler: keeps Postgres and what the runtime really runs in step. Each pass
//! stops sessions in `stopping` (whoever asked), starts those in `starting` that nothing
//! is starting, observes the others (progress, `running`, exits and deaths with a reason
//! a person understands), stops sessions past their lifetime or idle limit after a
//! warning, and removes what runs without a live session in Postgres (orphans).
//!
//! Every change is a guarded row transition (`... where state = 'starting'`) in a
//! transaction, so the launch task, the reconciler and a second daas never apply the
//! same change twice; a restart finds everything in Postgres and adopts it.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::runtime::{DatasetMount, Handle, ImageSpec, Kind, LaunchSpec, Observed, Resources};
use crate::sessions::db::{request_stop, transition, ACTIVE};
use crate::sessions::events;
use crate::state::AppState;

/// Runs the reconciler until the process ends: one pass at start-up (adoption), then one
/// every interval or as soon as something asks (`state.reconcile.notify_one()`).
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(err) = reconcile_once(&state).await {
                tracing::warn!(error = format!("{err:#}"), "reconcile pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(state.config.sessions.reconcile_interval) => {}
                _ = state.reconcile.notified() => {}
            }
        }
    })
}

#[derive(Clone, Debug, sqlx::FromRow)]
struct Row {
    id: Uuid,
    kind: String,
    state: String,
    runtime_handle: Option<serde_json::Value>,
    progress: Option<String>,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    last_activity_at: OffsetDateTime,
    warned_at: Option<OffsetDateTime>,
    idle_minutes: Option<i32>,
}

/// One pass over every live session of this runtime.
#[tracing::instrument(skip_all)]
pub async fn reconcile_once(state: &AppState) -> anyhow::Result<()> {
    // What runs, listed before reading Postgres: a session started after the read would
    // otherwise look like an orphan (its row is committed before anything of it runs).
    let running = state.runtime.list().await?;
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "select s.id, s.kind, s.state, s.runtime_handle, s.progress, s.created_at, s.expires_at, s.last_activity_at,
                s.warned_at,
                (select coalesce(uq.idle_minutes, rq.idle_minutes) from users u
                 left join quotas rq on rq.scope = 'role' and rq.role = u.role
                 left join quotas uq on uq.scope = 'user' and uq.user_id = u.id
                 where u.id = s.owner_id) as idle_minutes
         from sessions s where s.state in {ACTIVE} and s.runtime = $1"
    ))
    .bind(state.runtime.name())
    .fetch_all(&state.db)
    .await?;
    let live: HashSet<Uuid> = rows.iter().map(|r| r.id).collect();
    for state_name in ["starting", "running", "stopping"] {
        let n = rows.iter().filter(|r| r.state == state_name).count();
        metrics::gauge!("daas_sessions", "state" => state_name).set(n as f64);
    }
    let busy = state.launching.lock().expect("the launching set").clone();

    let mut tasks = tokio::task::JoinSet::new();
    for row in rows.into_iter().filter(|r| !busy.contains(&r.id)) {
        let state = state.clone();
        tasks.spawn(async move {
            let id = row.id;
            if let Err(err) = reconcile_session(&state, row).await {
                tracing::warn!(session.id = %id, error = format!("{err:#}"), "reconciling a session failed");
            }
        });
    }
    while tasks.join_next().await.is_some() {}

    // Orphans: running, but no live session in Postgres says so.
    for found in running {
        if !live.contains(&found.session_id) && !busy.contains(&found.session_id) {
            tracing::info!(session.id = %found.session_id, "removing an orphan");
            if let Err(err) = state.runtime.stop(found.session_id, &found.handle).await {
                tracing::warn!(session.id = %found.session_id, error = format!("{err:#}"), "cannot remove an orphan");
            }
        }
    }
    Ok(())
}

async fn reconcile_session(state: &AppState, row: Row) -> anyhow::Result<()> {
    match (row.state.as_str(), &row.runtime_handle) {
        ("stopping", handle) => finish_stop(state, row.id, handle.clone().map(Handle)).await,
        ("requested" | "starting", None) => {
            start_session(state.clone(), row.id);
            Ok(())
        }
        (_, Some(handle)) => {
            let handle = Handle(handle.clone());
            let observed = state.runtime.observe(row.id, &handle).await?;
            apply(state, &row, &handle, observed).await?;
            if row.state == "running" {
                expire(state, &row).await?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Stops what runs and marks the session `stopped`.
async fn finish_stop(state: &AppState, id: Uuid, handle: Option<Handle>) -> anyhow::Result<()> {
    if let Some(handle) = &handle {
        state.runtime.stop(id, handle).await?;
    }
    let mut tx = state.db.begin().await?;
    let current: Option<String> = sqlx::query_scalar("select state from sessions where id = $1 for update")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    if current.as_deref() == Some("stopping") {
        transition(&mut tx, id, "stopped", "Stopped").await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Applies what the runtime sees to the session row.
async fn apply(state: &AppState, row: &Row, handle: &Handle, observed: Observed) -> anyhow::Result<()> {
    let id = row.id;
    match observed {
        Observed::Pending { message } => {
            let late = OffsetDateTime::now_utc() - row.created_at > state.config.sessions.startup_timeout;
            if row.state == "starting" && late {
                let logs = state.runtime.logs(id, handle, 10).await.unwrap_or_default();
                let mut reason = format!(
                    "did not become ready within {} s ({message})",
                    state.config.sessions.startup_timeout.as_secs()
                );
                if !logs.is_empty() {
                    reason.push_str(&format!("; last output:\n{logs}"));
                }
                end(state, id, handle, &["starting"], "failed", &reason, None).await?;
            } else if row.state == "starting" && row.progress.as_deref() != Some(message.as_str()) {
                let mut tx = state.db.begin().await?;
                let updated = sqlx::query("update sessions set progress = $2 where id = $1 and state = 'starting'")
                    .bind(id)
                    .bind(&message)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if updated == 1 {
                    events::add(&mut tx, id, "starting", &message).await?;
                }
                tx.commit().await?;
            }
        }
        Observed::Running { endpoint } => {
            if row.state == "starting" {
                let mut tx = state.db.begin().await?;
                let updated = sqlx::query(
                    "update sessions set endpoint = nullif($2, ''), progress = null where id = $1 and state = 'starting'",
                )
                .bind(id)
                .bind(&endpoint)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 1 {
                    transition(&mut tx, id, "running", "Running").await?;
                    // Before the commit: whoever sees the `running` event finds the start
                    // in the metrics too (recorded after, a reader raced it).
                    let seconds = (OffsetDateTime::now_utc() - row.created_at).as_seconds_f64();
                    metrics::histogram!("daas_session_start_seconds", "kind" => row.kind.clone()).record(seconds);
                }
                tx.commit().await?;
            }
        }
        Observed::Exited { exit_code, message } => {
            let kind = Kind::parse(&row.kind).unwrap_or(Kind::Job);
            if kind == Kind::Job && exit_code == Some(0) {
                end(state, id, handle, &["starting", "running"], "stopped", "Finished (exit code 0)", Some(exit_code))
                    .await?;
            } else {
                let what = match kind {
                    Kind::Desktop => "The desktop",
                    Kind::Notebook => "JupyterLab",
                    Kind::Job => "The job",
                };
                end(
                    state,
                    id,
                    handle,
                    &["starting", "running"],
                    "failed",
                    &format!("{what} {message}"),
                    Some(exit_code),
                )
                .await?;
            }
        }
        Observed::Failed { reason } => {
            end(state, id, handle, &["starting", "running"], "failed", &reason, None).await?;
        }
        Observed::Gone => {
            end(
                state,
                id,
                handle,
                &["starting", "running"],
                "failed",
                "its processes are gone (stopped outside daas, or the machine restarted)",
                None,
            )
            .await?;
        }
    }
    Ok(())
}

/// Ends a session (`stopped` or `failed`) if it is still in one of `from`, records a job's
/// exit code, then removes what is left of it.
async fn end(
    state: &AppState,
    id: Uuid,
    handle: &Handle,
    from: &[&str],
    to: &str,
    message: &str,
    exit_code: Option<Option<i32>>,
) -> anyhow::Result<()> {
    let mut tx = state.db.begin().await?;
    let current: Option<(String, Option<String>)> =
        sqlx::query_as("select state, secret from sessions where id = $1 for update")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((_, secret)) = current.filter(|(c, _)| from.contains(&c.as_str())) {
        if let Some(code) = exit_code {
            sqlx::query("update jobs set exit_code = $2 where session_id = $1")
                .bind(id)
                .bind(code)
                .execute(&mut *tx)
                .await?;
        }
        // The output quoted in a reason may hold the session's token (Jupyter prints its
        // URL with it), and every member of the session reads the reason.
        let message = match secret.filter(|s| !s.is_empty()) {
            Some(secret) => message.replace(&secret, "[secret]"),
            None => message.to_string(),
        };
        transition(&mut tx, id, to, &message).await?;
        tracing::info!(session.id = %id, state = to, "session ended");
    }
    tx.commit().await?;
    state.runtime.stop(id, handle).await
}

/// Stops a running session past its lifetime or idle limit; warns once before.
async fn expire(state: &AppState, row: &Row) -> anyhow::Result<()> {
    let policy = &state.config.sessions;
    let now = OffsetDateTime::now_utc();
    let idle_limit = row
        .idle_minutes
        .map(|m| time::Duration::minutes(i64::from(m)))
        .unwrap_or_else(|| time::Duration::try_from(policy.idle_limit).unwrap_or(time::Duration::DAY));
    // Jobs have no user activity: only their lifetime bounds them.
    let idle_deadline = (row.kind != "job").then(|| row.last_activity_at + idle_limit);
    let (deadline, why) = match idle_deadline {
        Some(idle) if idle < row.expires_at => (idle, format!("idle for {}", hm(idle_limit))),
        _ => (row.expires_at, "its lifetime ends".to_string()),
    };
    if now >= deadline {
        let mut tx = state.db.begin().await?;
        let message = if why.starts_with("idle") {
            format!("Stopping: {why}")
        } else {
            "Stopping: its lifetime has ended".to_string()
        };
        request_stop(&mut tx, row.id, &message).await?;
        tx.commit().await?;
        state.reconcile.notify_one();
        return Ok(());
    }
    let warning = time::Duration::try_from(policy.warning).unwrap_or(time::Duration::ZERO);
    let warned = row.warned_at.is_some_and(|w| w >= row.last_activity_at && w >= deadline - warning);
    if now >= deadline - warning && !warned {
        let mut tx = state.db.begin().await?;
        let updated = sqlx::query("update sessions set warned_at = now() where id = $1 and state = 'running'")
            .bind(row.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 1 {
            let left = deadline - now;
            let at = deadline.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            let message = format!("Warning: stops in {} ({at}), {why}", hm(left));
            events::add(&mut tx, row.id, "running", &message).await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// "2 h", "1 h 5 min", "12 min".
fn hm(d: time::Duration) -> String {
    let minutes = d.whole_minutes().max(0);
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// Starts a session in the background (unless this process is starting it already), then
/// watches it closely until it runs, so a launch reaches `running` without waiting for the
/// next reconcile pass.
pub fn start_session(state: AppState, id: Uuid) {
    if !state.launching.lock().expect("the launching set").insert(id) {
        return;
    }
    tokio::spawn(async move {
        if let Err(err) = launch_and_watch(&state, id).await {
            tracing::warn!(session.id = %id, error = format!("{err:#}"), "starting a session failed");
        }
        state.launching.lock().expect("the launching set").remove(&id);
    });
}

async fn launch_and_watch(state: &AppState, id: Uuid) -> anyhow::Result<()> {
    let Some(spec) = load_spec(state, id).await? else { return Ok(()) };
    let handle = match state.runtime.launch(&spec).await {
        Ok(handle) => handle,
        Err(err) => {
            let mut tx = state.db.begin().await?;
            let current: Option<String> = sqlx::query_scalar("select state from sessions where id = $1 for update")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            match current.as_deref() {
                Some("requested" | "starting") => {
                    transition(&mut tx, id, "failed", &format!("could not start: {err:#}")).await?
                }
                Some("stopping") => transition(&mut tx, id, "stopped", "Stopped").await?,
                _ => {}
            }
            tx.commit().await?;
            return Ok(());
        }
    };
    let mut tx = state.db.begin().await?;
    let stored = sqlx::query(
        "update sessions set runtime_handle = $2 where id = $1 and state in ('requested', 'starting') and runtime_handle is null",
    )
    .bind(id)
    .bind(&handle.0)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    if stored == 0 {
        // Cancelled while it started: stop what was started.
        return finish_stop(state, id, Some(handle)).await;
    }
    let deadline = tokio::time::Instant::now() + state.config.sessions.startup_timeout + Duration::from_secs(1);
    let mut pause = Duration::from_millis(50);
    while tokio::time::Instant::now() < deadline {
        let row: Option<Row> = sqlx::query_as(
            "select id, kind, state, runtime_handle, progress, created_at, expires_at, last_activity_at, warned_at,
                    null::int as idle_minutes
             from sessions where id = $1",
        )
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
        let Some(row) = row else { return Ok(()) };
        match row.state.as_str() {
            "starting" => {
                let observed = state.runtime.observe(id, &handle).await.context("observing")?;
                apply(state, &row, &handle, observed).await?;
            }
            "stopping" => return finish_stop(state, id, Some(handle)).await,
            _ => return Ok(()),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
    Ok(())
}

/// The host uid of a session's owner, allocated from the configured range at their first
/// launch (in one statement: concurrent launches of one user get the same uid, of two
/// users two uids).
async fn host_uid(state: &AppState, session: Uuid) -> anyhow::Result<u32> {
    let range = state.config.sessions.uids;
    let uid: i32 = sqlx::query_scalar(
        "with owner as (select owner_id from sessions where id = $1)
         update users set host_uid = coalesce(host_uid, $2 + nextval('users_host_uid_seq')::int)
         where id = (select owner_id from owner) returning host_uid",
    )
    .bind(session)
    .bind(i64::from(range.first))
    .fetch_one(&state.db)
    .await?;
    match u32::try_from(uid) {
        Ok(uid) if uid <= range.last => Ok(uid),
        _ => anyhow::bail!("no host uid left in the configured range {}-{}", range.first, range.last),
    }
}

#[derive(sqlx::FromRow)]
struct SpecRow {
    kind: String,
    state: String,
    secret: Option<String>,
    cpu_millis: i32,
    memory_mib: i32,
    gpus: i32,
    owner: String,
    image: String,
    reference: String,
    local_command: Option<serde_json::Value>,
    gpu_type: Option<String>,
    disk_gib: i32,
    node_selector: serde_json::Value,
    tolerations: serde_json::Value,
    proposal: String,
    experiment: String,
    beamline: String,
    experiment_id: Uuid,
    parameters: Option<serde_json::Value>,
}

/// Everything the runtime needs, resolved from Postgres; `None` when the session is no
/// longer waiting to start.
async fn load_spec(state: &AppState, id: Uuid) -> anyhow::Result<Option<LaunchSpec>> {
    let row: Option<SpecRow> = sqlx::query_as(
        "select s.kind, s.state, s.secret, s.cpu_millis, s.memory_mib, s.gpus, u.username as owner, i.name as image,
                i.reference, i.local_command, f.gpu_type, f.disk_gib, f.node_selector, f.tolerations,
                p.identifier as proposal, e.code as experiment, e.beamline, s.experiment_id, j.parameters
         from sessions s join users u on u.id = s.owner_id join images i on i.id = s.image_id
         join flavours f on f.id = s.flavour_id join experiments e on e.id = s.experiment_id
         join proposals p on p.id = e.proposal_id left join jobs j on j.session_id = s.id
         where s.id = $1",
    )
    .bind(id)
    .fetch_optional(&state.db)
    .await?;
    let Some(row) = row.filter(|r| matches!(r.state.as_str(), "requested" | "starting")) else { return Ok(None) };
    let uid = host_uid(state, id).await?;
    let datasets: Vec<(String, String)> =
        sqlx::query_as("select name, location from datasets where experiment_id = $1 order by name")
            .bind(row.experiment_id)
            .fetch_all(&state.db)
            .await?;
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
        },
        proposal: row.proposal,
        experiment: row.experiment,
        experiment_folder: experiment_folder.display().to_string(),
        datasets: datasets.into_iter().map(|(name, location)| DatasetMount { name, location }).collect(),
        secret: row.secret.unwrap_or_default(),
        base_url: format!("/sessions/{id}/"),
        parameters: row.parameters,
    }))
}
