//! The admin console's pages under `/admin`: images, flavours, quotas, sessions, users,
//! usage, the audit log, notices and proposal import. Plain forms (CSRF-checked by the web layer) that call the same functions
//! as the JSON API, so a page and a script change things the same way, audit included.

use askama::Template;
use axum::body::Bytes;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;
use uuid::Uuid;

use super::images::{self, AdminImage, ImageInput};
use super::notices::{self, Notice, NoticeInput};
use super::usage::{self, UsageParams, UsageRow};
use crate::audit::Actor;
use crate::config::Role;
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
        .route("/admin/flavours", get(flavours_page))
        .route("/admin/quotas", get(quotas_page))
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

#[derive(Template)]
#[template(path = "admin/sessions.html")]
struct SessionsPage {
    ctx: Ctx,
    sessions: Vec<SessionRow>,
    total: i64,
    f: SessionFilter,
    states: [&'static str; 7],
    error: Option<String>,
    done: Option<String>,
}

#[derive(Deserialize, Default)]
struct SessionFilter {
    #[serde(default)]
    state: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    proposal: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    beamline: String,
}

async fn sessions_view(
    state: &AppState,
    ctx: Ctx,
    f: SessionFilter,
    error: Option<String>,
    done: Option<String>,
) -> PageResult {
    let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let page = super::sessions::list(
        &state.db,
        super::sessions::Filter {
            state: opt(&f.state),
            user: opt(&f.user),
            proposal: opt(&f.proposal),
            image: opt(&f.image),
            beamline: opt(&f.beamline),
        },
        100,
        0,
    )
    .await;
    let (items, total) = match page {
        Ok(page) => page,
        Err(err) => return sessions_view_empty(ctx, f, message(err)?),
    };
    let sessions = items
        .into_iter()
        .map(|s| SessionRow {
            active: ["requested", "starting", "running"].contains(&s.state.as_str()),
            id: s.id,
            kind: s.kind,
            state: s.state,
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
    render(&SessionsPage { ctx, sessions, total, f, states: STATES, error, done })
}

const STATES: [&str; 7] = ["active", "requested", "starting", "running", "stopping", "stopped", "failed"];

fn sessions_view_empty(ctx: Ctx, f: SessionFilter, error: String) -> PageResult {
    render(&SessionsPage { ctx, sessions: Vec::new(), total: 0, f, states: STATES, error: Some(error), done: None })
}

async fn sessions_page(state: AppState, page: PageUser, Query(f): Query<SessionFilter>) -> PageResult {
    sessions_view(&state, admin(page)?, f, None, None).await
}

async fn stop_sessions(state: AppState, page: PageUser, actor: Actor, body: Bytes) -> PageResult {
    let ctx = admin(page)?;
    let form = FormData::parse(&body);
    let ids: Result<Vec<Uuid>, _> = form.all("ids").iter().map(|i| i.parse::<Uuid>()).collect();
    let Ok(mut ids) = ids else { return Err(PageError(AppError::NotFound)) };
    ids.sort();
    ids.dedup();
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
    let result = super::sessions::stop(&state.db, &actor, &ids).await?;
    if !result.stopping.is_empty() {
        state.reconcile.notify_one();
    }
    let done = format!("{} session(s) stopping; {} left as they were.", result.stopping.len(), result.unchanged.len());
    sessions_view(&state, ctx, SessionFilter::default(), None, Some(done)).await
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

// ---- flavours, quotas ------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin/flavours.html")]
struct FlavoursPage {
    ctx: Ctx,
    flavours: Vec<super::flavours::AdminFlavour>,
}

async fn flavours_page(state: AppState, page: PageUser) -> PageResult {
    let ctx = admin(page)?;
    render(&FlavoursPage { ctx, flavours: super::flavours::all(&state.db).await? })
}

#[derive(Template)]
#[template(path = "admin/quotas.html")]
struct QuotasPage {
    ctx: Ctx,
    quotas: Vec<super::quotas::Quota>,
}

async fn quotas_page(state: AppState, page: PageUser) -> PageResult {
    let ctx = admin(page)?;
    render(&QuotasPage { ctx, quotas: super::quotas::all(&state.db).await? })
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
