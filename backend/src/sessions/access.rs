//! The remote-access log: each connection of a person to a session's desktop (one relay
//! WebSocket) or notebook (from the first of the lab's WebSockets to the last closing),
//! with the role, the browser's address, how long, and the bytes each way. The owner reads
//! a session's log on its page ("who watched"), admins all of it; both export it as CSV.
//! A row not yet closed is a connection open now: the desktop page's "connected now".
//! Each connect and disconnect is also a session event, so open pages follow them.

use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, PgPool};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::control::Viewer;
use crate::admin::spreadsheet_safe;
use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::{AdminUser, Json, Path, Query};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_session_access))
        .routes(routes!(export_session_access))
        .routes(routes!(list_access))
        .routes(routes!(export_access))
}

/// One connection to a session.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Access {
    pub id: i64,
    pub session: Uuid,
    /// The session's image.
    pub image: String,
    pub username: String,
    pub display_name: String,
    /// The role they connected with (`owner`, `user`, `guest`, `support`, or `admin`).
    pub role: String,
    /// `desktop` or `notebook`.
    pub kind: String,
    /// The browser's address as daas saw it.
    pub remote_addr: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub connected_at: OffsetDateTime,
    /// `None` while connected.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disconnected_at: Option<OffsetDateTime>,
    /// How long, in seconds (until now while connected).
    pub seconds: f64,
    /// Bytes from the browser to the session.
    pub bytes_in: i64,
    /// Bytes from the session to the browser.
    pub bytes_out: i64,
}

/// Records that `user` (`(id, username)`) connected to the session's `kind` (`desktop` or
/// `notebook`) with `role`, from `remote_addr`; the row's id, for `disconnect`.
pub async fn connect(
    db: &PgPool,
    session: Uuid,
    (user, username): (Uuid, &str),
    role: &str,
    kind: &str,
    remote_addr: Option<&str>,
) -> sqlx::Result<i64> {
    let mut tx = db.begin().await?;
    let id = sqlx::query_scalar(
        "insert into remote_access (session_id, user_id, role, kind, remote_addr) values ($1, $2, $3, $4, $5)
         returning id",
    )
    .bind(session)
    .bind(user)
    .bind(role)
    .bind(kind)
    .bind(remote_addr)
    .fetch_one(&mut *tx)
    .await?;
    let message = format!("{username} connected to the {kind} ({})", role_words(role));
    super::events::add_now(&mut tx, session, &message).await?;
    tx.commit().await?;
    Ok(id)
}

/// Closes the connection `id` with the bytes it carried each way.
pub async fn disconnect(db: &PgPool, id: i64, bytes_in: u64, bytes_out: u64) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    let closed: Option<(Uuid, String, String, f64)> = sqlx::query_as(
        "update remote_access a set disconnected_at = now(), bytes_in = $2, bytes_out = $3
         from users u where a.id = $1 and u.id = a.user_id and a.disconnected_at is null
         returning a.session_id, u.username, a.kind, extract(epoch from now() - a.connected_at)::float8",
    )
    .bind(id)
    .bind(i64::try_from(bytes_in).unwrap_or(i64::MAX))
    .bind(i64::try_from(bytes_out).unwrap_or(i64::MAX))
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((session, username, kind, seconds)) = closed {
        let message = format!("{username} left the {kind} after {}", duration(seconds));
        super::events::add_now(&mut tx, session, &message).await?;
    }
    tx.commit().await
}

/// Closes every connection left open (at start: the relays that held them ended with the
/// process); how many.
pub async fn close_left_open(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    let done = sqlx::query("update remote_access set disconnected_at = now() where disconnected_at is null")
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Who is connected to the session's `kind` now, one entry per person, earliest first, with
/// their role now (the log keeps the role they connected with).
pub async fn connected(db: impl PgExecutor<'_>, session: Uuid, kind: &str) -> sqlx::Result<Vec<Viewer>> {
    sqlx::query_as(
        "select u.username, u.display_name, coalesce(m.role, a.role) as role, min(a.connected_at) as since
         from remote_access a join users u on u.id = a.user_id
         left join session_members m on m.session_id = a.session_id and m.user_id = a.user_id
         where a.session_id = $1 and a.kind = $2 and a.disconnected_at is null
         group by u.username, u.display_name, coalesce(m.role, a.role) order by since",
    )
    .bind(session)
    .bind(kind)
    .fetch_all(db)
    .await
}

/// A role as a connection's event says it: a guest is watching, the others as the share
/// dialog says them (`owner` and `admin` as they are).
fn role_words(role: &str) -> &str {
    match role {
        "guest" => "watching",
        other => super::sharing::role_words(other),
    }
}

/// "45 s", "3 min 2 s", "1 h 5 min".
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as i64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// Which connections to read: all of them, or those of one session or person, from a time.
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct AccessFilter {
    /// One session's connections (its id).
    pub session: Option<String>,
    /// One person's: their username, or a part of their name (any case).
    pub user: Option<String>,
    /// Connected from this time on (RFC 3339, or a day: `2026-12-01`, from its start, UTC).
    pub from: Option<String>,
    /// Connected before this time (RFC 3339, or a day: before its start, UTC).
    pub to: Option<String>,
}

impl AccessFilter {
    /// The filter as a query string, for the CSV link.
    pub fn query_string(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [("session", &self.session), ("user", &self.user), ("from", &self.from), ("to", &self.to)] {
            if let Some(v) = crate::admin::filter(value) {
                q.append_pair(key, v);
            }
        }
        q.finish()
    }

    /// One session's connections only.
    pub fn of_session(id: Uuid) -> Self {
        AccessFilter { session: Some(id.to_string()), ..Default::default() }
    }

    fn session(&self) -> Result<Option<Uuid>> {
        crate::admin::filter(&self.session)
            .map(|s| Uuid::parse_str(s).map_err(|_| AppError::invalid("session", "must be a session id")))
            .transpose()
    }

    fn times(&self) -> Result<(Option<OffsetDateTime>, Option<OffsetDateTime>)> {
        let day = time::macros::format_description!("[year]-[month]-[day]");
        let parse = |field: &str, s: &Option<String>| {
            crate::admin::filter(s)
                .map(|s| {
                    OffsetDateTime::parse(s, &Rfc3339)
                        .or_else(|_| time::Date::parse(s, day).map(|d| d.midnight().assume_utc()))
                        .map_err(|_| AppError::invalid(field, "must be a day (2026-12-01) or an RFC 3339 time"))
                })
                .transpose()
        };
        Ok((parse("from", &self.from)?, parse("to", &self.to)?))
    }
}

/// Most rows one listing holds (newest first), and one CSV export (oldest first).
const LIST_MAX: i64 = 1000;
const CSV_MAX: i64 = 100_000;

/// The connections matching `f`, newest first (or oldest first), at most `limit`.
pub async fn search(db: &PgPool, f: &AccessFilter, newest_first: bool, limit: i64) -> Result<Vec<Access>> {
    let (from, to) = f.times()?;
    let order = if newest_first { "desc" } else { "asc" };
    let rows = sqlx::query_as(&format!(
        "select a.id, a.session_id as session, i.name as image, u.username, u.display_name, a.role, a.kind,
                a.remote_addr,
                a.connected_at, a.disconnected_at,
                extract(epoch from coalesce(a.disconnected_at, now()) - a.connected_at)::float8 as seconds,
                a.bytes_in, a.bytes_out
         from remote_access a join users u on u.id = a.user_id
         join sessions s on s.id = a.session_id join images i on i.id = s.image_id
         where ($1::uuid is null or a.session_id = $1)
           and ($2::text is null or u.username = lower($2) or strpos(lower(u.display_name), lower($2)) > 0)
           and ($3::timestamptz is null or a.connected_at >= $3) and ($4::timestamptz is null or a.connected_at < $4)
         order by a.connected_at {order}, a.id {order} limit $5"
    ))
    .bind(f.session()?)
    .bind(crate::admin::filter(&f.user))
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// The session's log, for its owner or an admin (404 when the caller cannot see the
/// session, 403 for its other members).
async fn session_log(state: &AppState, user: &CurrentUser, id: Uuid, newest_first: bool) -> Result<Vec<Access>> {
    let session = super::db::find_visible(&state.db, user, id).await?.ok_or(AppError::NotFound)?;
    if session.role.as_deref() != Some("owner") && !user.is_admin() {
        return Err(AppError::Forbidden("only the session's owner may read who connected".into()));
    }
    let limit = if newest_first { LIST_MAX } else { CSV_MAX };
    search(&state.db, &AccessFilter::of_session(id), newest_first, limit).await
}

/// Who connected to the session, newest first (at most 1000): its owner or an admin.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/access", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, body = Vec<Access>), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_session_access(
    state: AppState,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Vec<Access>>> {
    Ok(Json(session_log(&state, &user, id, true).await?))
}

/// Who connected to the session, as CSV, oldest first: its owner or an admin.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/access.csv", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session id")),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn export_session_access(
    state: AppState,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<impl IntoResponse> {
    csv_answer(&session_log(&state, &user, id, false).await?, &format!("daas-access-{id}.csv"))
}

/// Remote access to every session, newest first (at most 1000): admins.
#[utoipa::path(get, path = "/api/v1/admin/access", tag = "admin", params(AccessFilter),
    responses((status = 200, body = Vec<Access>), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_access(
    state: AppState,
    _admin: AdminUser,
    Query(f): Query<AccessFilter>,
) -> Result<Json<Vec<Access>>> {
    Ok(Json(search(&state.db, &f, true, LIST_MAX).await?))
}

/// Remote access to every session as CSV, oldest first (at most 100 000 rows): admins.
#[utoipa::path(get, path = "/api/v1/admin/access.csv", tag = "admin", params(AccessFilter),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn export_access(
    state: AppState,
    _admin: AdminUser,
    Query(f): Query<AccessFilter>,
) -> Result<impl IntoResponse> {
    csv_answer(&search(&state.db, &f, false, CSV_MAX).await?, "daas-access.csv")
}

/// The rows as a CSV download called `name`.
fn csv_answer(rows: &[Access], name: &str) -> Result<impl IntoResponse> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "id",
        "session",
        "user",
        "name",
        "role",
        "kind",
        "from",
        "connected_at",
        "disconnected_at",
        "seconds",
        "bytes_in",
        "bytes_out",
    ])
    .map_err(anyhow::Error::from)?;
    let time = |t: OffsetDateTime| t.format(&Rfc3339).map_err(anyhow::Error::from);
    for a in rows {
        out.write_record([
            a.id.to_string(),
            a.session.to_string(),
            a.username.clone(),
            spreadsheet_safe(a.display_name.clone()),
            a.role.clone(),
            a.kind.clone(),
            spreadsheet_safe(a.remote_addr.clone().unwrap_or_default()),
            time(a.connected_at)?,
            a.disconnected_at.map(time).transpose()?.unwrap_or_default(),
            format!("{:.0}", a.seconds),
            a.bytes_in.to_string(),
            a.bytes_out.to_string(),
        ])
        .map_err(anyhow::Error::from)?;
    }
    let body = out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    ))
}
