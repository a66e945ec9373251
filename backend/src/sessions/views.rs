//! The sessions pages: the Launch dialog of a proposal (experiment, image, flavour with its
//! resources, job parameters built from the image's schema, the quota left), My sessions
//! (cards that refresh themselves, with the invitations to answer) and one session with its
//! events.

use askama::Template;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{Map, Value};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use uuid::Uuid;

use super::db::{self, Session};
use super::lifecycle::expiry;
use super::lifecycle::launch::{self, LaunchRequest};
use super::lifecycle::stop::{self, Scope};
use super::lifecycle::SessionState;
use super::members::{self, Invitation};
use super::sharing::Sharing;
use crate::audit::Actor;
use crate::auth::identity::CurrentUser;
use crate::catalogue::db as catalogue;
use crate::error::AppError;
use crate::jobs::views::JobView;
use crate::proposals::db as proposals;
use crate::state::AppState;
use crate::web::page::{render, see_other, Ctx, FormError, PageResult, PageUser};
use crate::web::{Form, Path, Query};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/proposals/{id}/launch", get(launch_page).post(launch_from_page))
        .route("/sessions", get(sessions_page))
        .route("/sessions/cards", get(session_cards))
        .route("/sessions/{id}", get(session_page))
        .route("/sessions/{id}/live", get(session_live))
        .route("/sessions/{id}/stop", post(stop_from_page))
        .route("/sessions/{id}/extend", post(extend_from_page))
        .route("/sessions/{id}/accept", post(accept_from_page))
        .route("/sessions/{id}/decline", post(decline_from_page))
        .route("/sessions/{id}/hide", post(hide_from_page))
}

const WHEN: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day] [hour]:[minute] UTC");

pub struct Choice {
    pub id: Uuid,
    pub label: String,
    pub detail: String,
}

/// One input of a job's parameters, from a property of the image's JSON Schema.
pub struct Field {
    pub name: String,
    pub label: String,
    pub required: bool,
    /// `select`, `number`, `dataset` or `text`.
    pub input: &'static str,
    pub options: Vec<String>,
    pub default: String,
    pub help: String,
    /// For numbers: `1` for integers, `any` otherwise.
    pub step: &'static str,
    /// Shown only while another parameter has one of these values (`(name, values)`, from
    /// the schema's `if`/`then`): iterations only for an iterative algorithm.
    pub when: Option<(String, Vec<String>)>,
}

/// A `dataset` parameter's choices: each experiment's datasets (`(experiment id, code,
/// names)`), of which the page offers those of the chosen experiment.
pub type DatasetGroups = Vec<(Uuid, String, Vec<String>)>;

#[derive(Template)]
#[template(path = "sessions/launch.html")]
struct LaunchPage {
    ctx: Ctx,
    identifier: String,
    title: String,
    images: Vec<Choice>,
    /// The chosen image (its id, name and kind), once one is picked.
    image: Option<(Uuid, String, String)>,
    experiments: Vec<Choice>,
    flavours: Vec<Choice>,
    fields: Vec<Field>,
    datasets: DatasetGroups,
    quota: Vec<String>,
    error: Option<FormError>,
    /// The experiment and flavour chosen before a refusal (else the first of each).
    experiment: Option<Uuid>,
    flavour: Option<Uuid>,
}

/// The Launch dialog; `?image=` chooses the image, and the form's own fields in the query
/// (`experiment`, `flavour`, `param.NAME`) fill it in (a job page's "Reconstruct the volume
/// with centre X" links here).
async fn launch_page(
    state: AppState,
    PageUser { user, ctx }: PageUser,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> PageResult {
    let image = query.iter().find(|(k, _)| k == "image").and_then(|(_, v)| Uuid::parse_str(v).ok());
    render(&launch_form(&state, &user, ctx, &id, image, None, &query).await?)
}

/// The Launch dialog: images to choose from; once one is chosen, the rest of the form.
async fn launch_form(
    state: &AppState,
    user: &CurrentUser,
    ctx: Ctx,
    identifier: &str,
    image_id: Option<Uuid>,
    error: Option<FormError>,
    typed: &[(String, String)],
) -> Result<LaunchPage, crate::web::page::PageError> {
    let proposal = proposals::find_visible(&state.db, user, identifier).await?.ok_or(AppError::NotFound)?;
    let rows = catalogue::images(&state.db, user.role).await?;
    let chosen = image_id.and_then(|id| rows.iter().find(|i| i.id == id));
    let images = rows
        .iter()
        .map(|i| Choice { id: i.id, label: format!("{} ({})", i.name, i.kind), detail: i.description.clone() })
        .collect();
    let found = proposals::experiments(&state.db, proposal.id).await?;
    let datasets =
        found.iter().map(|e| (e.id, e.code.clone(), e.datasets.iter().map(|d| d.name.clone()).collect())).collect();
    let experiments = found
        .into_iter()
        .map(|e| Choice {
            id: e.id,
            label: e.code,
            detail: format!(
                "{} to {}, {} dataset{}",
                e.starts_at.format(WHEN).unwrap_or_default(),
                e.ends_at.format(WHEN).unwrap_or_default(),
                e.datasets.len(),
                if e.datasets.len() == 1 { "" } else { "s" }
            ),
        })
        .collect();
    // The flavours the chosen image runs on (an image that names none runs on all).
    let runs_on = |f: &catalogue::Flavour| chosen.is_none_or(|i| i.flavours.is_empty() || i.flavours.contains(&f.id));
    let flavours = catalogue::flavours(&state.db, user.role)
        .await?
        .into_iter()
        .filter(runs_on)
        .map(|f| Choice {
            id: f.id,
            label: f.name,
            detail: resources(f.cpu_millis, f.memory_mib, f.gpus, f.gpu_type.as_deref()),
        })
        .collect();
    let mut fields = chosen.and_then(|i| i.parameter_schema.as_ref()).map(schema_fields).unwrap_or_default();
    // A refused form comes back as typed; a link may fill it in.
    let typed_value = |name: &str| typed.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    for field in &mut fields {
        if let Some(value) = typed_value(&format!("param.{}", field.name)) {
            field.default = value;
        }
    }
    let typed_id = |name: &str| typed_value(name).and_then(|v| Uuid::parse_str(&v).ok());
    Ok(LaunchPage {
        ctx,
        identifier: proposal.identifier,
        title: proposal.title,
        images,
        image: chosen.map(|i| (i.id, i.name.clone(), i.kind.clone())),
        experiments,
        flavours,
        fields,
        datasets,
        quota: quota_left(state, user).await?,
        error,
        experiment: typed_id("experiment"),
        flavour: typed_id("flavour"),
    })
}

fn resources(cpu_millis: i32, memory_mib: i32, gpus: i32, gpu_type: Option<&str>) -> String {
    let cpus = f64::from(cpu_millis) / 1000.0;
    let mut text = format!("{cpus} CPUs · {} GiB memory", memory_mib / 1024);
    if gpus > 0 {
        text.push_str(&format!(" · {gpus} GPU{}", if gpus > 1 { "s" } else { "" }));
        if let Some(t) = gpu_type {
            text.push_str(&format!(" ({t})"));
        }
    }
    text
}

/// What the caller still may launch, line by line ("1 of 2 sessions in use").
async fn quota_left(state: &AppState, user: &CurrentUser) -> sqlx::Result<Vec<String>> {
    let mut conn = state.db.acquire().await?;
    let limits = crate::quotas::db::for_user(&mut conn, user.id, user.role.as_str()).await?;
    let used = crate::quotas::db::usage_of_user(&mut conn, user.id).await?;
    let (sessions, cpu, mem, gpus) = (used.sessions, used.cpu_millis, used.memory_mib, used.gpus);
    let line = |what: &str, used: String, limit: Option<String>| match limit {
        Some(limit) => format!("{what}: {used} of {limit} in use"),
        None => format!("{what}: {used} in use, no limit"),
    };
    Ok(vec![
        line("Sessions", sessions.to_string(), limits.max_sessions.map(|l| l.to_string())),
        line(
            "CPUs",
            (cpu as f64 / 1000.0).to_string(),
            limits.max_cpu_millis.map(|l| (f64::from(l) / 1000.0).to_string()),
        ),
        line("Memory (GiB)", (mem / 1024).to_string(), limits.max_memory_mib.map(|l| (l / 1024).to_string())),
        line("GPUs", gpus.to_string(), limits.max_gpus.map(|l| l.to_string())),
        match limits.max_gpu_hours_month {
            Some(limit) => format!(
                "GPU-hours this month: {} of {limit} used{}",
                crate::quotas::hours(used.gpu_hours_month),
                if used.gpu_hours_month >= f64::from(limit) {
                    format!(
                        "; GPU flavours can be launched again from {} (UTC)",
                        crate::quotas::next_month(time::OffsetDateTime::now_utc().date())
                    )
                } else {
                    " (GPU flavours are refused once they are used up)".to_string()
                }
            ),
            None => format!("GPU-hours this month: {} used, no limit", crate::quotas::hours(used.gpu_hours_month)),
        },
    ])
}

/// The conditions of a schema's `if`/`then` (at its root or in `allOf`) on one parameter's
/// values (`const` or `enum`): `(field, (parameter, values))` for each field its `then`
/// names (in `properties` or `required`).
fn conditions(schema: &Value) -> Vec<(String, (String, Vec<String>))> {
    let rules = std::iter::once(schema).chain(schema.get("allOf").and_then(Value::as_array).into_iter().flatten());
    let mut found = Vec::new();
    for rule in rules {
        let (Some(test), Some(then)) = (rule.get("if").and_then(|i| i.get("properties")), rule.get("then")) else {
            continue;
        };
        let Some((name, test)) = test.as_object().and_then(|t| t.iter().next()) else { continue };
        let values: Vec<String> = match (test.get("const"), test.get("enum").and_then(Value::as_array)) {
            (Some(value), _) => vec![plain(value)],
            (None, Some(values)) => values.iter().map(plain).collect(),
            _ => continue,
        };
        let named = then.get("properties").and_then(Value::as_object).into_iter().flat_map(|p| p.keys().cloned());
        let required = then.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
        for field in named.chain(required.map(String::from)) {
            found.push((field, (name.clone(), values.clone())));
        }
    }
    found
}

/// Form inputs for the top-level properties of a job's parameter schema. A string `dataset`
/// is a choice among the chosen experiment's datasets.
fn schema_fields(schema: &Value) -> Vec<Field> {
    let conditions = conditions(schema);
    let required: Vec<&str> =
        schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return vec![] };
    properties
        .iter()
        .map(|(name, p)| {
            let options: Vec<String> =
                p.get("enum").and_then(Value::as_array).into_iter().flatten().map(plain).collect();
            let kind = p.get("type").and_then(Value::as_str).unwrap_or("string");
            let input = if !options.is_empty() {
                "select"
            } else if name == "dataset" && kind == "string" {
                "dataset"
            } else if matches!(kind, "number" | "integer") {
                "number"
            } else {
                "text"
            };
            Field {
                name: name.clone(),
                label: p.get("title").and_then(Value::as_str).unwrap_or(name).to_string(),
                required: required.contains(&name.as_str()),
                input,
                options,
                default: p.get("default").map(plain).unwrap_or_default(),
                help: p.get("description").and_then(Value::as_str).unwrap_or_default().to_string(),
                step: if kind == "integer" { "1" } else { "any" },
                when: conditions.iter().find(|(field, _)| field == name).map(|(_, when)| when.clone()),
            }
        })
        .collect()
}

fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), String::from)
}

/// Turns the submitted `param.*` fields into parameters typed as the schema says; empty
/// fields are left out (the schema then says whether they were required).
fn parameters(schema: &Value, form: &[(String, String)]) -> Result<Value, AppError> {
    let properties = schema.get("properties").and_then(Value::as_object);
    let mut out = Map::new();
    for (key, value) in form {
        let Some(name) = key.strip_prefix("param.") else { continue };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let kind = properties.and_then(|p| p.get(name)).and_then(|p| p.get("type")).and_then(Value::as_str);
        let typed = match kind {
            Some("integer") => value
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| AppError::invalid(format!("parameters.{name}"), "must be a whole number"))?,
            Some("number") => value
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| AppError::invalid(format!("parameters.{name}"), "must be a number"))?,
            _ => Value::String(value.to_string()),
        };
        out.insert(name.to_string(), typed);
    }
    Ok(Value::Object(out))
}

async fn launch_from_page(
    state: AppState,
    PageUser { user, ctx }: PageUser,
    actor: Actor,
    Path(identifier): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let uuid = |name: &str| field(name).and_then(|v| Uuid::parse_str(v).ok());
    let image = uuid("image");
    let attempt = async {
        let (Some(image), Some(flavour), Some(experiment)) = (image, uuid("flavour"), uuid("experiment")) else {
            return Err(AppError::invalid("form", "choose an experiment, an image and a flavour"));
        };
        // The experiment must belong to this page's proposal.
        let proposal = proposals::find_visible(&state.db, &user, &identifier).await?.ok_or(AppError::NotFound)?;
        if !db::experiment_of_proposal(&state.db, experiment, proposal.id).await? {
            return Err(AppError::invalid("experiment", "not an experiment of this proposal"));
        }
        let schema = db::parameter_schema(&state.db, image).await?;
        let params = schema.map(|s| parameters(&s.unwrap_or(Value::Null), &form)).transpose()?;
        let request = LaunchRequest { image, flavour, experiment, parameters: None };
        launch::launch(&state, &user, &actor, &request, params.as_ref()).await
    };
    match attempt.await {
        Ok(id) => Ok(see_other(&format!("/sessions/{id}"))),
        Err(err @ (AppError::Invalid { .. } | AppError::Conflict(_) | AppError::Forbidden(_))) => {
            let status = err.status();
            let mut error = FormError::of(err)?;
            // The API's names of the fields are the form's, but for the parameters (which
            // the form names by their own names).
            error.field = error.field.filter(|f| f != "form").map(|f| match f.strip_prefix("parameters.") {
                Some(name) => format!("param.{name}"),
                None => f,
            });
            if let Some(message) = error.message.strip_prefix("parameters.") {
                error.message = message.to_owned();
            }
            let page = launch_form(&state, &user, ctx, &identifier, image, Some(error), &form).await?;
            let mut response = render(&page)?;
            *response.status_mut() = status;
            Ok(response)
        }
        Err(err) => Err(err.into()),
    }
}

/// A session as a card shows it.
pub struct Card {
    pub s: Session,
    /// How a person reads its state (`Session::label`): finished, cancelled, running...
    pub label: &'static str,
    pub state_class: &'static str,
    pub time_left: String,
    pub resources: String,
    pub can_stop: bool,
    /// The caller may enter the notebook (Jupyter has no read-only mode: not a guest) or
    /// the web app (a guest too).
    pub can_open: bool,
    /// Running: it can be connected to, and stopping it is a stop, not a cancel.
    pub running: bool,
    pub ended: bool,
    /// Someone else's session the caller was invited to.
    pub shared: bool,
    /// When it started and ended, for a person ("started 2026-11-30 18:20 UTC, ended 18:45").
    pub when: String,
    /// What the caller may add to its lifetime, `(minutes, label)`; filled on its own page
    /// only (`with_extension`).
    pub extend_by: Vec<(i32, String)>,
    /// Why nothing can be added any more, when that is so.
    pub extension_used: Option<String>,
}

impl Card {
    /// The session page's "Extend by" choices: steps a person picks, up to what is left of
    /// the owner's extension limit (and all that is left, when that is not a step).
    async fn with_extension(mut self, state: &AppState) -> sqlx::Result<Card> {
        if self.ended || !self.can_stop || self.s.state == SessionState::Stopping {
            return Ok(self);
        }
        let Some(e) = db::extension(&state.db, self.s.id).await? else { return Ok(self) };
        let left = expiry::extension_left(e.extension_minutes, e.extended_minutes, &state.config.sessions);
        let label = |m: i32| expiry::hm(time::Duration::minutes(m.into()));
        self.extend_by =
            [30, 60, 120, 240, 480, 1440].into_iter().filter(|m| *m < left).map(|m| (m, label(m))).collect();
        if left > 0 {
            self.extend_by.push((left, format!("{} (all that is left)", label(left))));
        } else {
            self.extension_used = Some(format!(
                "It has had all the extra time its owner's quota allows ({}); an admin can give more.",
                label(e.extended_minutes)
            ));
        }
        Ok(self)
    }
}

pub(crate) fn card(s: Session, me: &CurrentUser) -> Card {
    let ended = s.state.has_ended();
    let time_left = match s.seconds_left {
        Some(secs) if secs >= 3600 => format!("stops in {} h {} min", secs / 3600, secs % 3600 / 60),
        Some(secs) => format!("stops in {} min", secs / 60),
        None => String::new(),
    };
    let label = s.label();
    Card {
        label,
        state_class: match label {
            "finished" => "done",
            _ => match s.state {
                SessionState::Running => "ok",
                SessionState::Failed => "bad",
                SessionState::Stopped => "off",
                _ => "busy",
            },
        },
        time_left,
        resources: resources(s.cpu_millis, s.memory_mib, s.gpus, None),
        can_stop: !ended && matches!(s.role.as_deref(), Some("owner" | "user")) && s.state != SessionState::Stopping,
        can_open: crate::proxy::notebook::may_open(&s.kind, s.role.as_deref()),
        running: s.state == SessionState::Running,
        ended,
        shared: s.owner != me.username,
        when: when(&s),
        extend_by: Vec::new(),
        extension_used: None,
        s,
    }
}

/// "requested …", "started …", "started …, ended …" (the end's date only when it differs).
fn when(s: &Session) -> String {
    let at = |t: time::OffsetDateTime| t.format(WHEN).unwrap_or_default();
    match (s.started_at, s.stopped_at) {
        (Some(start), Some(stop)) if start.date() == stop.date() => {
            let hm = format_description!("[hour]:[minute] UTC");
            format!("started {}, ended {}", at(start), stop.format(hm).unwrap_or_default())
        }
        (Some(start), Some(stop)) => format!("started {}, ended {}", at(start), at(stop)),
        (None, Some(stop)) => format!("requested {}, ended {}", at(s.created_at), at(stop)),
        (Some(start), None) => format!("started {}", at(start)),
        (None, None) => format!("requested {}", at(s.created_at)),
    }
}

#[derive(Template)]
#[template(path = "sessions/page.html")]
struct SessionsPage {
    ctx: Ctx,
    invitations: Vec<Invitation>,
    groups: Vec<(&'static str, Vec<Card>)>,
}

#[derive(Template)]
#[template(path = "sessions/_cards.html")]
struct SessionCards {
    ctx: Ctx,
    invitations: Vec<Invitation>,
    groups: Vec<(&'static str, Vec<Card>)>,
}

/// The caller's sessions: running first, then the most recent that ended (a day's worth).
/// The caller's cards on My sessions, the live ones and those ended in the last day apart
/// (a group only when it has cards).
async fn my_cards(state: &AppState, user: &CurrentUser) -> sqlx::Result<Vec<(&'static str, Vec<Card>)>> {
    let (ended, live): (Vec<Card>, Vec<Card>) =
        db::cards(&state.db, user).await?.into_iter().map(|s| card(s, user)).partition(|c| c.ended);
    Ok([("Live", live), ("Ended in the last day", ended)].into_iter().filter(|(_, c)| !c.is_empty()).collect())
}

async fn sessions_page(state: AppState, PageUser { user, ctx }: PageUser) -> PageResult {
    let invitations = db::invitations(&state.db, user.id).await?;
    let groups = my_cards(&state, &user).await?;
    render(&SessionsPage { ctx, invitations, groups })
}

async fn session_cards(state: AppState, PageUser { user, ctx }: PageUser) -> PageResult {
    let invitations = db::invitations(&state.db, user.id).await?;
    let groups = my_cards(&state, &user).await?;
    render(&SessionCards { ctx, invitations, groups })
}

pub struct EventLine {
    pub at: String,
    pub state: SessionState,
    pub message: String,
}

#[derive(Template)]
#[template(path = "sessions/detail.html")]
struct SessionPage {
    ctx: Ctx,
    c: Card,
    /// A job's parameters, `(name, value as JSON)`, in the schema's order of the stored object.
    parameters: Vec<(String, String)>,
    events: Vec<EventLine>,
    job: Option<JobView>,
    /// The share dialog and who connected (the owner and admins).
    sharing: Option<Sharing>,
    roles: [(&'static str, &'static str); 3],
}

/// The part of the session page that follows the session (`data-follow`).
#[derive(Template)]
#[template(path = "sessions/_live.html")]
struct SessionLive {
    ctx: Ctx,
    c: Card,
    events: Vec<EventLine>,
    job: Option<JobView>,
}

async fn events(state: &AppState, id: Uuid) -> sqlx::Result<Vec<EventLine>> {
    let rows = db::latest_events(&state.db, id, 100).await?;
    let fmt = format_description!("[hour]:[minute]:[second]");
    Ok(rows
        .into_iter()
        .map(|(at, state, message)| EventLine { at: at.format(fmt).unwrap_or_default(), state, message })
        .collect())
}

async fn session_page(state: AppState, PageUser { user, ctx }: PageUser, Path(id): Path<Uuid>) -> PageResult {
    session_page_with(&state, &user, ctx, id, |_| {}).await
}

/// The session page, its share dialog adjusted by `adjust` (a refused change comes back as
/// typed).
pub(super) async fn session_page_with(
    state: &AppState,
    user: &CurrentUser,
    ctx: Ctx,
    id: Uuid,
    adjust: impl FnOnce(&mut Sharing),
) -> PageResult {
    let s = db::find_visible(&state.db, user, id).await?.ok_or(AppError::NotFound)?;
    let mut sharing = Sharing::load(state, user, &s).await?;
    if let Some(sharing) = &mut sharing {
        adjust(sharing);
    }
    let events = events(state, id).await?;
    let stored = db::job_parameters(&state.db, id).await?;
    let job = job_view(state, &s, stored.as_ref()).await;
    let parameters = match stored {
        Some(serde_json::Value::Object(map)) => map.into_iter().map(|(k, v)| (k, v.to_string())).collect(),
        _ => Vec::new(),
    };
    let c = card(s, user).with_extension(state).await?;
    render(&SessionPage { ctx, c, parameters, events, job, sharing, roles: super::sharing::ROLES })
}

async fn session_live(state: AppState, PageUser { user, ctx }: PageUser, Path(id): Path<Uuid>) -> PageResult {
    let s = db::find_visible(&state.db, &user, id).await?.ok_or(AppError::NotFound)?;
    let job = job_view(&state, &s, db::job_parameters(&state.db, id).await?.as_ref()).await;
    let c = card(s, &user).with_extension(&state).await?;
    render(&SessionLive { ctx, c, events: events(&state, id).await?, job })
}

/// A job's part of its page (`crate::jobs::views`); `None` for desktops and notebooks.
async fn job_view(state: &AppState, s: &Session, parameters: Option<&Value>) -> Option<JobView> {
    match s.kind.as_str() {
        "job" => Some(crate::jobs::views::view(state, s, parameters).await),
        _ => None,
    }
}

#[derive(Deserialize)]
struct StopForm {
    /// Where to go afterwards: a local path.
    back: Option<String>,
}

async fn stop_from_page(
    state: AppState,
    PageUser { user, .. }: PageUser,
    actor: Actor,
    Path(id): Path<Uuid>,
    Form(form): Form<StopForm>,
) -> PageResult {
    stop::stop(&state, &actor, Scope::Member(&user), &[id]).await?;
    let back = crate::web::redirect::local_or(form.back.as_deref(), "/sessions");
    Ok(see_other(&back))
}

#[derive(Deserialize)]
struct ExtendForm {
    minutes: i32,
}

/// "Extend by" on the session page.
async fn extend_from_page(
    state: AppState,
    PageUser { user, .. }: PageUser,
    actor: Actor,
    Path(id): Path<Uuid>,
    Form(form): Form<ExtendForm>,
) -> PageResult {
    expiry::more_time(&state, &actor, &user, id, form.minutes).await?;
    Ok(see_other(&format!("/sessions/{id}")))
}

/// Accept button of an invitation: the session joins the caller's cards.
async fn accept_from_page(
    state: AppState,
    PageUser { user, .. }: PageUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> PageResult {
    members::accept(&state, &user, &actor, id).await?;
    Ok(see_other("/sessions"))
}

/// Hide button of an ended card.
async fn hide_from_page(state: AppState, PageUser { user, .. }: PageUser, Path(id): Path<Uuid>) -> PageResult {
    if !db::hide(&state.db, id, user.id).await? {
        return Err(AppError::NotFound.into());
    }
    Ok(see_other("/sessions"))
}

/// Decline button of an invitation.
async fn decline_from_page(
    state: AppState,
    PageUser { user, .. }: PageUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> PageResult {
    members::decline(&state, &user, &actor, id).await?;
    Ok(see_other("/sessions"))
}
