//! Every session, as the admin's list (and a beamline's staff's) shows it.

use serde::Serialize;
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::sessions::lifecycle::SessionState;

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct AdminSession {
    pub id: Uuid,
    /// `desktop`, `notebook` or `job`.
    pub kind: String,
    pub state: SessionState,
    pub owner: String,
    pub image: String,
    pub flavour: String,
    pub proposal: String,
    pub experiment: String,
    pub beamline: String,
    pub cpu_millis: i32,
    pub memory_mib: i32,
    pub gpus: i32,
    /// `local` or `kubernetes`.
    pub runtime: String,
    pub failure_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub stopped_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub last_activity_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Minutes its members added to its lifetime themselves (`POST /api/v1/sessions/{id}/extend`).
    pub extended_minutes: i32,
}

/// What the sessions list is narrowed to; `None` is no filter.
#[derive(Default)]
pub struct Filter {
    /// A state, or `active`.
    pub state: Option<String>,
    pub user: Option<String>,
    pub proposal: Option<String>,
    pub image: Option<String>,
    pub beamline: Option<String>,
}

fn select<'a>(columns: &'static str) -> QueryBuilder<'a, Postgres> {
    let mut q = QueryBuilder::new("select ");
    q.push(columns).push(
        " from sessions s join users u on u.id = s.owner_id join images i on i.id = s.image_id
              join flavours f on f.id = s.flavour_id join experiments e on e.id = s.experiment_id
              join proposals p on p.id = e.proposal_id
         where true",
    );
    q
}

/// `select count(*)` of the sessions, joined only to the tables the filter reads: each
/// join is on a non-null foreign key, so it changes no count, and a million sessions
/// joined to five tables took seconds to count.
fn select_count<'a>(beamline: Option<&str>, f: &Filter) -> QueryBuilder<'a, Postgres> {
    let mut q = QueryBuilder::new("select count(*) from sessions s");
    if f.user.is_some() {
        q.push(" join users u on u.id = s.owner_id");
    }
    if f.image.is_some() {
        q.push(" join images i on i.id = s.image_id");
    }
    if f.proposal.is_some() || f.beamline.is_some() || beamline.is_some() {
        q.push(" join experiments e on e.id = s.experiment_id");
    }
    if f.proposal.is_some() {
        q.push(" join proposals p on p.id = e.proposal_id");
    }
    q.push(" where true");
    q
}

const COLUMNS: &str = "s.id, s.kind, s.state, u.username as owner, i.name as image, f.name as flavour,
    p.identifier as proposal, e.code as experiment, e.beamline, s.cpu_millis, s.memory_mib, s.gpus, s.runtime,
    s.failure_reason, s.created_at, s.started_at, s.stopped_at, s.last_activity_at, s.expires_at,
    s.extended_minutes";

/// Narrows to `beamline` (a staff's view), the filter and `states`.
fn push_filter<'a>(
    q: &mut QueryBuilder<'a, Postgres>,
    beamline: Option<&str>,
    f: &'a Filter,
    states: Option<&'a [SessionState]>,
) {
    if let Some(states) = states {
        q.push(" and s.state = any(").push_bind(states).push(")");
    }
    if let Some(user) = &f.user {
        q.push(" and u.username = ").push_bind(user);
    }
    if let Some(proposal) = &f.proposal {
        q.push(" and p.identifier = ").push_bind(proposal);
    }
    if let Some(image) = &f.image {
        q.push(" and i.name = ").push_bind(image);
    }
    if let Some(beamline) = &f.beamline {
        q.push(" and e.beamline = ").push_bind(beamline);
    }
    if let Some(beamline) = beamline {
        q.push(" and e.beamline = ").push_bind(beamline.to_owned());
    }
}

/// A page of the sessions (of `beamline`) matching the filter, newest first, and how many match.
pub async fn list<'a>(
    db: &sqlx::PgPool,
    beamline: Option<&str>,
    f: &'a Filter,
    states: Option<&'a [SessionState]>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<AdminSession>, i64)> {
    let mut q = select(COLUMNS);
    push_filter(&mut q, beamline, f, states);
    q.push(" order by s.created_at desc, s.id limit ").push_bind(limit).push(" offset ").push_bind(offset);
    let items = q.build_query_as().fetch_all(db).await?;
    let mut q = select_count(beamline, f);
    push_filter(&mut q, beamline, f, states);
    let total = q.build_query_scalar().fetch_one(db).await?;
    Ok((items, total))
}

/// One session.
pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<AdminSession>> {
    let mut q = select(COLUMNS);
    q.push(" and s.id = ").push_bind(id);
    q.build_query_as().fetch_optional(db).await
}
