//! The admin console's pages under `/admin`: images, flavours, quotas, sessions, users,
//! usage, the audit log, notices and proposal import. Plain forms (CSRF-checked by the web
//! layer) that call the same functions as the JSON API, so a page and a script change
//! things the same way, audit included.

use askama::Template;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;
use uuid::Uuid;

use super::flavours::{self, AdminFlavour, FlavourInput};
use super::images::{self, AdminImage, ImageInput};
use super::notices::{self, Notice, NoticeInput};
use super::quotas;
use super::usage::{self, UsageParams, UsageRow};
use crate::audit::Actor;
use crate::auth::identity::Role;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::page::{render, see_other, Ctx, PageError, PageResult, PageUser};
use crate::web::{MaybeUser, Path, Query};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|| async { see_other("/admin/images") }))
        .route("/admin/images", get(images_page).post(create_image))
        .route("/admin/images/{id}/enabled", post(toggle_image))
        .route("/admin/images/{id}/delete", post(delete_image))
        .route("/admin/sessions", get(sessions_page))
        .route("/admin/sessions/stop", post(stop_sessions))
        .route("/admin/sessions/{id}/extend", post(extend_session))
        .route("/admin/users", get(users_page))
        .route("/admin/users/{username}/role", post(set_role))
        .route("/admin/users/{username}/enabled", post(set_enabled))
        .route("/admin/usage", get(usage_page))
        .route("/admin/audit", get(audit_page))
        .route("/admin/notices", get(notices_page).post(create_notice))
        .route("/admin/notices/{id}/delete", post(delete_notice))
        .route("/admin/flavours", get(flavours_page).post(create_flavour))
        .route("/admin/flavours/{id}", post(update_flavour))
        .route("/admin/flavours/{id}/enabled", post(toggle_flavour))
        .route("/admin/flavours/{id}/delete", post(delete_flavour))
        .route("/admin/quotas", get(quotas_page).post(set_quota))
        .route("/admin/quotas/delete", post(delete_quota))
        .route("/admin/import", get(import_page).post(import_proposals))
        .route("/notices/banner", get(notices_banner))
}

const WHEN: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day] [hour]:[minute]");

fn when(t: OffsetDateTime) -> String {
    t.format(WHEN).unwrap_or_default()
}

/// The page's visitor, when they are an admin; anyone else gets the 403 page.
fn admin(page: PageUser) -> Result<Ctx, PageError> {
    if !page.user.is_admin() {
        return Err(PageError(AppError::Forbidden("this page needs the admin role".into())));
    }
    Ok(page.ctx)
}

/// The fields of a URL-encoded form, repeated names kept (checkbox lists).
struct FormData(Vec<(String, String)>);

impl FormData {
    fn parse(body: &Bytes) -> Self {
        FormData(url::form_urlencoded::parse(body).into_owned().collect())
    }

    fn one(&self, key: &str) -> String {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim().to_owned()).unwrap_or_default()
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    fn number(&self, key: &str, default: i32) -> Result<i32, AppError> {
        match self.one(key).as_str() {
            "" => Ok(default),
            text => text.parse().map_err(|_| AppError::invalid(key, "must be a whole number")),
        }
    }

    fn json(&self, key: &str) -> Result<Option<serde_json::Value>, AppError> {
        match self.one(key).as_str() {
            "" => Ok(None),
            text => {
                serde_json::from_str(text).map(Some).map_err(|e| AppError::invalid(key, format!("is not JSON: {e}")))
            }
        }
    }
}

/// An error a person can act on, shown above the form; anything else is an error page.
fn message(err: AppError) -> Result<String, PageError> {
    match err {
        AppError::Invalid { field, message } => Ok(format!("{}: {message}", field.replace('_', " "))),
        AppError::Conflict(message) | AppError::Forbidden(message) => Ok(message),
        other => Err(PageError(other)),
    }
}

/// Why a form was refused: the status of the answer and the message above the form.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    /// An error a person can act on (400, 403, 409); anything else is the error page.
    fn of(err: AppError) -> Result<Self, PageError> {
        let status = err.status();
        Ok(Refusal { status, message: message(err)? })
    }

    /// Something typed into the form does not exist.
    fn not_found(message: String) -> Self {
        Refusal { status: StatusCode::NOT_FOUND, message }
    }
}

/// A page shown again after a refused form, with the refusal's message and status, so
/// neither a person nor a script mistakes it for a success.
fn refused_page(refused: Option<Refusal>, page: impl FnOnce(Option<String>) -> PageResult) -> PageResult {
    let Some(refusal) = refused else { return page(None) };
    let mut response = page(Some(refusal.message))?;
    *response.status_mut() = refusal.status;
    Ok(response)
}

// ---- images ----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin/images.html")]
struct ImagesPage {
    ctx: Ctx,
    images: Vec<AdminImage>,
    error: Option<String>,
}

async fn images_view(state: &AppState, ctx: Ctx, error: Option<String>) -> PageResult {
    let images =
        sqlx::query_scalar::<_, Uuid>("select id from images order by kind, name").fetch_all(&state.db).await?;
    let mut rows = Vec::with_capacity(images.len());
    for id in images {
        rows.push(images::find(&state.db, id).await?);
    }
    render(&ImagesPage { ctx, images: rows, error })
}

async fn images_page(state: AppState, page: PageUser) -> PageResult {
    images_view(&state, admin(page)?, None).await
}

fn image_input(form: &FormData) -> Result<ImageInput, AppError> {
    let roles = form.all("allowed_roles");
    Ok(ImageInput {
        name: form.one("name"),
        kind: form.one("kind"),
        reference: form.one("reference"),
        protocol: None,
        default_cpu_millis: form.number("default_cpu_millis", 1000)?,
        default_memory_mib: form.number("default_memory_mib", 2048)?,
        default_gpus: form.number("default_gpus", 0)?,
        default_disk_gib: form.number("default_disk_gib", 0)?,
        enabled: true,
        description: form.one("description"),
        icon: Some(form.one("icon")).filter(|i| !i.is_empty()),
        allowed_roles: if roles.is_empty() { images::all_roles() } else { roles },
        flavours: Vec::new(),
        parameter_schema: form.json("parameter_schema")?,
        local_command: form.json("local_command")?,
    })
}

async fn create_image(state: AppState, page: PageUser, actor: Actor, body: Bytes) -> PageResult {
    let ctx = admin(page)?;
    let form = FormData::parse(&body);
    let result = match image_input(&form) {
        Ok(input) => images::create(&state.db, &actor, input).await.map(|_| ()),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(see_other("/admin/images")),
        Err(err) => images_view(&state, ctx, Some(message(err)?)).await,
    }
}

async fn toggle_image(state: AppState, page: PageUser, actor: Actor, Path(id): Path<Uuid>) -> PageResult {
    let ctx = admin(page)?;
    let image = images::find(&state.db, id).await?;
    let mut input = image.to_input();
    input.enabled = !image.enabled;
    match images::update(&state.db, &actor, id, input).await {
        Ok(_) => Ok(see_other("/admin/images")),
        Err(err) => images_view(&state, ctx, Some(message(err)?)).await,
    }
}

async fn delete_image(state: AppState, page: PageUser, actor: Actor, Path(id): Path<Uuid>) -> PageResult {
    let ctx = admin(page)?;
    match images::delete(&state.db, &actor, id).await {
        Ok(()) => Ok(see_other("/admin/images")),
        Err(err) => images_view(&state, ctx, Some(message(err)?)).await,
    }
}

// ---- sessions --------------------------------------------------------------------------

pub struct SessionRow {
    pub id: Uuid,
    pub kind: String,
    pub state: String,
    pub owner: String,
    pub image: String,
    pub proposal: String,
    pub experiment: String,
    pub beamline: String,
    pub resources: String,
    pub created: String,
    pub expires: String,
    pub active: bool,
}

/// The sessions list of the admin page and of a beamline's staff page (`crate::beamlines`):
/// the same filters, table and stop form, over a different scope.
pub struct SessionList {
    pub sessions: Vec<SessionRow>,
    pub total: i64,
    pub f: SessionFilter,
    pub states: [&'static str; 7],
    /// Where the filter and the stop form go: `/admin/sessions` or `/beamlines/BL11/sessions`.
    pub base: String,
    /// The beamline the list is narrowed to (staff pages): no beamline filter, no extend.
    pub beamline: Option<String>,
    pub error: Option<String>,
    pub done: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/sessions.html")]
struct SessionsPage {
    ctx: Ctx,
    list: SessionList,
}

/// The filters of the sessions list, as typed.
#[derive(Deserialize, Default)]
pub struct SessionFilter {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub proposal: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub beamline: String,
}

const STATES: [&str; 7] = ["active", "requested", "starting", "running", "stopping", "stopped", "failed"];

/// The newest 100 sessions in `scope` matching `f`; a bad filter is a message, not an error.
pub async fn session_list(
    db: &sqlx::PgPool,
    scope: super::sessions::Scope<'_>,
    f: SessionFilter,
    error: Option<String>,
    done: Option<String>,
) -> Result<SessionList, PageError> {
    let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let filter = super::sessions::Filter {
        state: opt(&f.state),
        user: opt(&f.user),
        proposal: opt(&f.proposal),
        image: opt(&f.image),
        beamline: opt(&f.beamline),
    };
    let (base, beamline) = match scope {
        super::sessions::Scope::All => ("/admin/sessions".to_owned(), None),
        super::sessions::Scope::Member(_) => ("/sessions".to_owned(), None),
        super::sessions::Scope::Beamline(b) => (
            format!("/beamlines/{}/sessions", url::form_urlencoded::byte_serialize(b.as_bytes()).collect::<String>()),
            Some(b.to_owned()),
        ),
    };
    let mut list = SessionList { sessions: Vec::new(), total: 0, f, states: STATES, base, beamline, error, done };
    let (items, total) = match super::sessions::list(db, scope, filter, 100, 0).await {
        Ok(page) => page,
        Err(err) => {
            list.error = Some(message(err)?);
            return Ok(list);
        }
    };
    list.total = total;
    list.sessions = items
        .into_iter()
        .map(|s| SessionRow {
            active: crate::sessions::lifecycle::SessionState::STOPPABLE.contains(&s.state),
            id: s.id,
            kind: s.kind,
            state: s.state.to_string(),
            owner: s.owner,
            image: s.image,
            proposal: s.proposal,
            experiment: s.experiment,
            beamline: s.beamline,
            resources: format!(
                "{} CPU, {} GiB{}",
                f64::from(s.cpu_millis) / 1000.0,
                s.memory_mib / 1024,
                if s.gpus > 0 { format!(", {} GPU", s.gpus) } else { String::new() }
            ),
            created: when(s.created_at),
            expires: when(s.expires_at),
        })
        .collect();
    Ok(list)
}

/// The ids ticked in a stop form; `None` when one is not an id (a forged form).
pub fn ticked_ids(body: &Bytes) -> Option<Vec<Uuid>> {
    let ids: Result<Vec<Uuid>, _> = FormData::parse(body).all("ids").iter().map(|i| i.parse::<Uuid>()).collect();
    let mut ids = ids.ok()?;
    ids.sort();
    ids.dedup();
    Some(ids)
}

/// What a stop did, for the line above the list.
pub fn stopped_message(result: &super::sessions::StopResult) -> String {
    format!("{} session(s) stopping; {} left as they were.", result.stopping.len(), result.unchanged.len())
}

async fn sessions_view(
    state: &AppState,
    ctx: Ctx,
    f: SessionFilter,
    error: Option<String>,
    done: Option<String>,
) -> PageResult {
    let list = session_list(&state.db, super::sessions::Scope::All, f, error, done).await?;
    render(&SessionsPage { ctx, list })
}

async fn sessions_page(state: AppState, page: PageUser, Query(f): Query<SessionFilter>) -> PageResult {
    sessions_view(&state, admin(page)?, f, None, None).await
}

async fn stop_sessions(state: AppState, page: PageUser, actor: Actor, body: Bytes) -> PageResult {
    let ctx = admin(page)?;
    let Some(ids) = ticked_ids(&body) else { return Err(PageError(AppError::NotFound)) };
    if ids.is_empty() {
        return sessions_view(
            &state,
            ctx,
            SessionFilter::default(),
            Some("Tick the sessions to stop first.".into()),
            None,
        )
        .await;
    }
    let result = super::sessions::stop(&state, &actor, super::sessions::Scope::All, &ids).await?;
    sessions_view(&state, ctx, SessionFilter::default(), None, Some(stopped_message(&result))).await
}

async fn extend_session(
    state: AppState,
    page: PageUser,
    actor: Actor,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> PageResult {
    let ctx = admin(page)?;
    let form = FormData::parse(&body);
    let hours = match form.number("hours", 4) {
        Ok(h) if (1..=24 * 90).contains(&h) => h,
        _ => {
            return sessions_view(
                &state,
                ctx,
                SessionFilter::default(),
                Some("Extend by 1 hour to 90 days.".into()),
                None,
            )
            .await
        }
    };
    let current: OffsetDateTime = sqlx::query_scalar("select greatest(expires_at, now()) from sessions where id = $1")
        .bind(id)
        .fetch_optional(&state.db)
        .await?
        .ok_or(AppError::NotFound)?;
    match super::sessions::extend(&state.db, &actor, id, current + time::Duration::hours(hours.into())).await {
        Ok(s) => {
            let done = format!("Session of {} now expires {}.", s.owner, when(s.expires_at));
            sessions_view(&state, ctx, SessionFilter::default(), None, Some(done)).await
        }
        Err(err) => sessions_view(&state, ctx, SessionFilter::default(), Some(message(err)?), None).await,
    }
}

// ---- users -----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    ctx: Ctx,
    users: Vec<super::users::UserRow>,
    total: i64,
    q: String,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct UsersQuery {
    #[serde(default)]
    q: String,
}

async fn users_view(state: &AppState, ctx: Ctx, q: String, error: Option<String>) -> PageResult {
    let search = Some(q.trim()).filter(|s| !s.is_empty());
    let (users, total) = super::users::search(&state.db, search, None, None, 100, 0).await?;
    render(&UsersPage { ctx, users, total, q, error })
}

async fn users_page(state: AppState, page: PageUser, Query(query): Query<UsersQuery>) -> PageResult {
    users_view(&state, admin(page)?, query.q, None).await
}

async fn set_role(
    state: AppState,
    page: PageUser,
    actor: Actor,
    Path(username): Path<String>,
    body: Bytes,
) -> PageResult {
    let me = page.user.clone();
    let ctx = admin(page)?;
    let form = FormData::parse(&body);
    let Some(role) = Role::parse(&form.one("role")) else {
        return users_view(&state, ctx, String::new(), Some("Choose user, scientist or admin.".into())).await;
    };
    match super::users::set_role(&state.db, &me, &actor, &username, role).await {
        Ok(_) => Ok(see_other("/admin/users")),
        Err(err) => users_view(&state, ctx, String::new(), Some(message(err)?)).await,
    }
}

async fn set_enabled(
    state: AppState,
    page: PageUser,
    actor: Actor,
    Path(username): Path<String>,
    body: Bytes,
) -> PageResult {
    let me = page.user.clone();
    let ctx = admin(page)?;
    let enabled = FormData::parse(&body).one("enabled") == "true";
    match super::users::set_enabled(&state.db, &me, &actor, &username, enabled).await {
        Ok(_) => Ok(see_other("/admin/users")),
        Err(err) => users_view(&state, ctx, String::new(), Some(message(err)?)).await,
    }
}

// ---- usage -----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin/usage.html")]
struct UsagePage {
    ctx: Ctx,
    by: String,
    from: String,
    to: String,
    metric: String,
    rows: Vec<UsageRow>,
    /// The same filter as a query string, for the chart and the CSV link.
    query: String,
    error: Option<String>,
}

async fn usage_page(state: AppState, page: PageUser, Query(params): Query<UsageParams>) -> PageResult {
    let ctx = admin(page)?;
    let by = params.by.clone().filter(|b| !b.is_empty()).unwrap_or_else(|| "month".into());
    let from = params.from.clone().unwrap_or_default();
    let to = params.to.clone().unwrap_or_default();
    let metric = params.metric.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| "cpu_hours".into());
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("by", &by)
        .append_pair("from", &from)
        .append_pair("to", &to)
        .append_pair("metric", &metric)
        .finish();
    let (rows, error) = match usage::compute(&state.db, &params).await {
        Ok((_, rows)) => (rows, None),
        Err(err) => (Vec::new(), Some(message(err)?)),
    };
    render(&UsagePage { ctx, by, from, to, metric, rows, query, error })
}

// ---- audit -----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    ctx: Ctx,
    events: Vec<AuditRow>,
    total: i64,
    f: super::audit_log::AuditFilter,
    query: String,
    page: i64,
    pages: i64,
    error: Option<String>,
}

pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub details: String,
    pub remote_addr: String,
}

async fn audit_page(state: AppState, page: PageUser, Query(f): Query<super::audit_log::AuditFilter>) -> PageResult {
    let ctx = admin(page)?;
    let per_page = 50;
    let query = f.query_string();
    let (events, total, page, error) = match super::audit_log::search(&state.db, &f, per_page).await {
        Ok(found) => (found.items, found.total, found.page, None),
        Err(err) => (Vec::new(), 0, 1, Some(message(err)?)),
    };
    let events = events
        .into_iter()
        .map(|e| AuditRow {
            at: when(e.at),
            actor: e.actor.unwrap_or_default(),
            action: e.action,
            object: match (e.object_type, e.object_id) {
                (Some(t), Some(i)) => format!("{t} {i}"),
                (t, i) => t.or(i).unwrap_or_default(),
            },
            details: if e.details.as_object().is_some_and(|d| d.is_empty()) {
                String::new()
            } else {
                e.details.to_string()
            },
            remote_addr: e.remote_addr.unwrap_or_default(),
        })
        .collect();
    let pages = ((total + per_page - 1) / per_page).max(1);
    render(&AuditPage { ctx, events, total, f, query, page, pages, error })
}

// ---- notices ---------------------------------------------------------------------------

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
    error: Option<String>,
}

async fn notices_view(state: &AppState, ctx: Ctx, error: Option<String>) -> PageResult {
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
    render(&NoticesPage { ctx, notices, error })
}

async fn notices_page(state: AppState, page: PageUser) -> PageResult {
    notices_view(&state, admin(page)?, None).await
}

async fn create_notice(state: AppState, page: PageUser, actor: Actor, body: Bytes) -> PageResult {
    let ctx = admin(page)?;
    let form = FormData::parse(&body);
    let hours = match form.number("hours", 24) {
        Ok(h) if (1..=24 * 365).contains(&h) => h,
        _ => return notices_view(&state, ctx, Some("Show it for 1 hour to a year.".into())).await,
    };
    let input = NoticeInput {
        message: form.one("message"),
        level: Some(form.one("level")).filter(|l| !l.is_empty()),
        starts_at: None,
        expires_at: OffsetDateTime::now_utc() + time::Duration::hours(hours.into()),
    };
    match notices::create(&state.db, &actor, input).await {
        Ok(_) => Ok(see_other("/admin/notices")),
        Err(err) => notices_view(&state, ctx, Some(message(err)?)).await,
    }
}

async fn delete_notice(state: AppState, page: PageUser, actor: Actor, Path(id): Path<Uuid>) -> PageResult {
    admin(page)?;
    notices::delete(&state.db, &actor, id).await?;
    Ok(see_other("/admin/notices"))
}

#[derive(Template)]
#[template(path = "notices/_banner.html")]
struct Banner {
    notices: Vec<Notice>,
}

/// The notices showing now, as a fragment the layout loads (empty for visitors).
async fn notices_banner(state: AppState, MaybeUser(user): MaybeUser) -> PageResult {
    let notices = if user.is_some() { notices::active(&state.db).await? } else { Vec::new() };
    render(&Banner { notices })
}

// ---- flavours ---------------------------------------------------------------------------

/// The flavour form as typed, so a refused submission comes back with what was typed.
pub struct FlavourForm {
    /// The flavour being edited; `None` adds one.
    pub id: Option<Uuid>,
    pub name: String,
    pub cpu_millis: String,
    pub memory_mib: String,
    pub gpus: String,
    pub gpu_type: String,
    pub disk_gib: String,
    pub node_selector: String,
    pub tolerations: String,
    pub roles: Vec<String>,
    pub enabled: bool,
}

impl FlavourForm {
    /// An empty form, with the sizes most flavours start from.
    fn blank() -> Self {
        FlavourForm {
            id: None,
            name: String::new(),
            cpu_millis: "2000".into(),
            memory_mib: "4096".into(),
            gpus: "0".into(),
            gpu_type: String::new(),
            disk_gib: "0".into(),
            node_selector: "{}".into(),
            tolerations: "[]".into(),
            roles: images::all_roles(),
            enabled: true,
        }
    }

    fn of(f: &AdminFlavour) -> Self {
        FlavourForm {
            id: Some(f.id),
            name: f.name.clone(),
            cpu_millis: f.cpu_millis.to_string(),
            memory_mib: f.memory_mib.to_string(),
            gpus: f.gpus.to_string(),
            gpu_type: f.gpu_type.clone().unwrap_or_default(),
            disk_gib: f.disk_gib.to_string(),
            node_selector: f.node_selector.to_string(),
            tolerations: f.tolerations.to_string(),
            roles: f.allowed_roles.clone(),
            enabled: f.enabled,
        }
    }

    fn submitted(form: &FormData, id: Option<Uuid>) -> Self {
        FlavourForm {
            id,
            name: form.one("name"),
            cpu_millis: form.one("cpu_millis"),
            memory_mib: form.one("memory_mib"),
            gpus: form.one("gpus"),
            gpu_type: form.one("gpu_type"),
            disk_gib: form.one("disk_gib"),
            node_selector: form.one("node_selector"),
            tolerations: form.one("tolerations"),
            roles: form.all("allowed_roles"),
            enabled: form.one("enabled") == "true",
        }
    }

    /// The input the API takes; each field that is not a number (or not JSON) is a 400
    /// naming it. No role ticked means no role may use it.
    fn input(&self) -> Result<FlavourInput, AppError> {
        let number = |field: &str, text: &str, default: i32| match text.trim() {
            "" => Ok(default),
            text => text.parse::<i32>().map_err(|_| AppError::invalid(field, "must be a whole number")),
        };
        let json = |field: &str, text: &str, default: serde_json::Value| match text.trim() {
            "" => Ok(default),
            text => serde_json::from_str(text).map_err(|e| AppError::invalid(field, format!("is not JSON: {e}"))),
        };
        Ok(FlavourInput {
            name: self.name.clone(),
            cpu_millis: number("cpu_millis", &self.cpu_millis, 0)?,
            memory_mib: number("memory_mib", &self.memory_mib, 0)?,
            gpus: number("gpus", &self.gpus, 0)?,
            gpu_type: Some(self.gpu_type.clone()),
            disk_gib: number("disk_gib", &self.disk_gib, 0)?,
            node_selector: json("node_selector", &self.node_selector, serde_json::json!({}))?,
            tolerations: json("tolerations", &self.tolerations, serde_json::json!([]))?,
            allowed_roles: self.roles.clone(),
            enabled: self.enabled,
        })
    }

    pub fn has_role(&self, role: &&str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[derive(Template)]
#[template(path = "admin/flavours.html")]
struct FlavoursPage {
    ctx: Ctx,
    flavours: Vec<AdminFlavour>,
    form: FlavourForm,
    error: Option<String>,
}

/// The flavours page; after a refused submission its status is the refusal's (400, 404,
/// 409), with the message above the form and the form as it was typed.
async fn flavours_view(state: &AppState, ctx: Ctx, form: FlavourForm, refused: Option<AppError>) -> PageResult {
    let refused = refused.map(Refusal::of).transpose()?;
    let flavours = flavours::all(&state.db).await?;
    refused_page(refused, |error| render(&FlavoursPage { ctx, flavours, form, error }))
}

#[derive(Deserialize)]
struct FlavoursQuery {
    /// The flavour to fill the form with.
    edit: Option<Uuid>,
}

async fn flavours_page(state: AppState, page: PageUser, Query(q): Query<FlavoursQuery>) -> PageResult {
    let ctx = admin(page)?;
    let form = match q.edit {
        Some(id) => FlavourForm::of(&flavours::find(&state.db, id).await?),
        None => FlavourForm::blank(),
    };
    flavours_view(&state, ctx, form, None).await
}

async fn create_flavour(state: AppState, page: PageUser, actor: Actor, body: Bytes) -> PageResult {
    let ctx = admin(page)?;
    let form = FlavourForm::submitted(&FormData::parse(&body), None);
    let result = match form.input() {
        Ok(input) => flavours::create(&state.db, &actor, input).await.map(|_| ()),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(see_other("/admin/flavours")),
        Err(err) => flavours_view(&state, ctx, form, Some(err)).await,
    }
}

async fn update_flavour(
    state: AppState,
    page: PageUser,
    actor: Actor,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> PageResult {
    let ctx = admin(page)?;
    let form = FlavourForm::submitted(&FormData::parse(&body), Some(id));
    let result = match form.input() {
        Ok(input) => flavours::update(&state.db, &actor, id, input).await.map(|_| ()),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(see_other("/admin/flavours")),
        Err(err) => flavours_view(&state, ctx, form, Some(err)).await,
    }
}

async fn toggle_flavour(state: AppState, page: PageUser, actor: Actor, Path(id): Path<Uuid>) -> PageResult {
    let ctx = admin(page)?;
    let flavour = flavours::find(&state.db, id).await?;
    let mut input = flavour.to_input();
    input.enabled = !flavour.enabled;
    match flavours::update(&state.db, &actor, id, input).await {
        Ok(_) => Ok(see_other("/admin/flavours")),
        Err(err) => flavours_view(&state, ctx, FlavourForm::blank(), Some(err)).await,
    }
}

async fn delete_flavour(state: AppState, page: PageUser, actor: Actor, Path(id): Path<Uuid>) -> PageResult {
    let ctx = admin(page)?;
    match flavours::delete(&state.db, &actor, id).await {
        Ok(()) => Ok(see_other("/admin/flavours")),
        Err(err) => flavours_view(&state, ctx, FlavourForm::blank(), Some(err)).await,
    }
}

// ---- quotas ----------------------------------------------------------------------------

/// The limits a quota row has, in the order the page shows them.
const LIMITS: [(&str, &str); 5] = [
    ("max_sessions", "Sessions"),
    ("max_cpu_millis", "CPU (millicores)"),
    ("max_memory_mib", "Memory (MiB)"),
    ("max_gpus", "GPUs"),
    ("max_gpu_hours_month", "GPU-hours / month"),
];

/// One limit of a row: what is used now beside what may be used (as typed, for a form).
pub struct LimitCell {
    pub name: &'static str,
    pub label: &'static str,
    pub used: String,
    pub value: String,
}

/// A quota as the page shows it: one form per row.
pub struct QuotaLine {
    /// `roles`, `users` or `proposals`, as the API's path names it.
    pub scope: String,
    /// `role`, `user` or `proposal`.
    pub kind: String,
    pub subject: String,
    pub cells: Vec<LimitCell>,
    /// This row's submission was refused (it shows what was typed).
    pub refused: bool,
}

/// The quota form as typed.
pub struct QuotaForm {
    pub scope: String,
    pub subject: String,
    pub values: Vec<String>,
}

impl QuotaForm {
    fn submitted(form: &FormData) -> Self {
        QuotaForm {
            scope: form.one("scope"),
            subject: form.one("subject"),
            values: LIMITS.iter().map(|(name, _)| form.one(name)).collect(),
        }
    }

    /// The limits as the API takes them: empty is no limit (for a user: the role's).
    fn limits(&self) -> Result<quotas::Limits, AppError> {
        let mut numbers = [None; 5];
        for (n, ((field, _), text)) in LIMITS.iter().zip(&self.values).enumerate() {
            numbers[n] =
                match text.trim() {
                    "" => None,
                    text => Some(text.parse::<i32>().map_err(|_| {
                        AppError::invalid(*field, "must be a whole number (leave it empty for no limit)")
                    })?),
                };
        }
        let [max_sessions, max_cpu_millis, max_memory_mib, max_gpus, max_gpu_hours_month] = numbers;
        Ok(quotas::Limits { max_sessions, max_cpu_millis, max_memory_mib, max_gpus, max_gpu_hours_month })
    }

    /// The labelled cells of the "set a quota" form.
    pub fn cells(&self) -> Vec<LimitCell> {
        LIMITS
            .iter()
            .zip(&self.values)
            .map(|((name, label), value)| LimitCell { name, label, used: String::new(), value: value.clone() })
            .collect()
    }
}

#[derive(Template)]
#[template(path = "admin/quotas.html")]
struct QuotasPage {
    ctx: Ctx,
    lines: Vec<QuotaLine>,
    /// The form for a new override (or for a refused one that matched no row).
    entry: QuotaForm,
    error: Option<String>,
}

fn text(limit: Option<i32>) -> String {
    limit.map(|l| l.to_string()).unwrap_or_default()
}

async fn quotas_view(state: &AppState, ctx: Ctx, submitted: Option<QuotaForm>, refused: Option<Refusal>) -> PageResult {
    let mut lines: Vec<QuotaLine> = quotas::all(&state.db)
        .await?
        .into_iter()
        .map(|q| {
            let (l, u) = (&q.limits, &q.in_use);
            let used = [
                u.sessions.to_string(),
                u.cpu_millis.to_string(),
                u.memory_mib.to_string(),
                u.gpus.to_string(),
                crate::quotas::hours(u.gpu_hours_month),
            ];
            let values = [
                text(l.max_sessions),
                text(l.max_cpu_millis),
                text(l.max_memory_mib),
                text(l.max_gpus),
                text(l.max_gpu_hours_month),
            ];
            QuotaLine {
                scope: format!("{}s", q.scope),
                cells: LIMITS
                    .iter()
                    .zip(used.into_iter().zip(values))
                    .map(|((name, label), (used, value))| LimitCell { name, label, used, value })
                    .collect(),
                kind: q.scope,
                subject: q.subject,
                refused: false,
            }
        })
        .collect();
    let mut entry = QuotaForm { scope: "users".into(), subject: String::new(), values: vec![String::new(); 5] };
    if let Some(submitted) = submitted {
        match lines.iter_mut().find(|l| l.scope == submitted.scope && l.subject == submitted.subject) {
            Some(line) => {
                line.refused = true;
                for (cell, value) in line.cells.iter_mut().zip(submitted.values) {
                    cell.value = value;
                }
            }
            None => entry = submitted,
        }
    }
    refused_page(refused, |error| render(&QuotasPage { ctx, lines, entry, error }))
}

async fn quotas_page(state: AppState, page: PageUser) -> PageResult {
    quotas_view(&state, admin(page)?, None, None).await
}

/// Why a quota form was refused. A 404 from the quota functions means that the role, user
/// or proposal typed does not exist (or, to remove, has no quota of its own): a mistake in
/// the form, said on the page.
fn quota_refusal(err: AppError, form: &QuotaForm, removing: bool) -> Result<Refusal, PageError> {
    let AppError::NotFound = err else { return Refusal::of(err) };
    let subject = &form.subject;
    Ok(Refusal::not_found(match form.scope.as_str() {
        "users" | "proposals" if removing => {
            format!("{} {subject:?} has no quota of its own to remove", form.scope.trim_end_matches('s'))
        }
        "roles" => format!("there is no role {subject:?} (user, scientist or admin)"),
        "users" => format!("there is no user {subject:?}"),
        "proposals" => format!("there is no proposal {subject:?}"),
        _ => "choose a role, a user or a proposal".into(),
    }))
}

async fn set_quota(state: AppState, page: PageUser, actor: Actor, body: Bytes) -> PageResult {
    let ctx = admin(page)?;
    let form = QuotaForm::submitted(&FormData::parse(&body));
    let result = match form.limits() {
        Ok(limits) => quotas::set(&state.db, &actor, &form.scope, &form.subject, limits).await.map(|_| ()),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(see_other("/admin/quotas")),
        Err(err) => {
            let refusal = quota_refusal(err, &form, false)?;
            quotas_view(&state, ctx, Some(form), Some(refusal)).await
        }
    }
}

async fn delete_quota(state: AppState, page: PageUser, actor: Actor, body: Bytes) -> PageResult {
    let ctx = admin(page)?;
    let form = QuotaForm::submitted(&FormData::parse(&body));
    match quotas::remove(&state.db, &actor, &form.scope, &form.subject).await {
        Ok(()) => Ok(see_other("/admin/quotas")),
        Err(err) => {
            let refusal = quota_refusal(err, &form, true)?;
            quotas_view(&state, ctx, None, Some(refusal)).await
        }
    }
}

// ---- proposal import -------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin/import.html")]
struct ImportPage {
    ctx: Ctx,
    text: String,
    format: String,
    result: Option<super::import::ImportResult>,
    error: Option<String>,
}

async fn import_page(page: PageUser) -> PageResult {
    let ctx = admin(page)?;
    render(&ImportPage { ctx, text: String::new(), format: "json".into(), result: None, error: None })
}

/// Previews (`action=preview`) or applies an export pasted into the form.
async fn import_proposals(state: AppState, page: PageUser, actor: Actor, body: Bytes) -> PageResult {
    let ctx = admin(page)?;
    let form = FormData::parse(&body);
    let text = form.0.iter().find(|(k, _)| k == "text").map(|(_, v)| v.clone()).unwrap_or_default();
    let format = if form.one("format") == "csv" { "csv" } else { "json" };
    let apply = form.one("action") == "apply";
    let parsed = super::import::parse_text(
        &text,
        if format == "csv" { crate::proposals::import::Format::Csv } else { crate::proposals::import::Format::Json },
    );
    let outcome = match parsed {
        Ok(proposals) => super::import::run(&state.db, apply.then_some(&actor), &proposals).await,
        Err(err) => Err(err),
    };
    let (result, error) = match outcome {
        Ok(result) => (Some(result), None),
        Err(err) => (None, Some(message(err)?)),
    };
    render(&ImportPage { ctx, text, format: format.into(), result, error })
}
