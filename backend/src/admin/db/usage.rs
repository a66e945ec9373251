//! The usage query: CPU-hours, GPU-hours and sessions per month and per a key.

use serde::Serialize;
use utoipa::ToSchema;

use sqlx::{PgExecutor, Postgres, QueryBuilder};
use time::PrimitiveDateTime;

/// What rows are per, besides the month.
#[derive(Clone, Copy)]
pub enum Key {
    Month,
    User,
    Proposal,
    Beamline,
    Image,
}

impl Key {
    /// The column the rows are grouped by, over the query's joins.
    fn column(self) -> &'static str {
        match self {
            Key::Month => "''",
            Key::User => "u.username",
            Key::Proposal => "p.identifier",
            Key::Beamline => "e.beamline",
            Key::Image => "i.name",
        }
    }

    /// The joins the column needs beside the sessions `s` (each on a non-null foreign key,
    /// so no session is lost or counted twice).
    fn joins(self) -> &'static str {
        match self {
            Key::Month => "",
            Key::User => " join users u on u.id = s.owner_id",
            Key::Proposal => " join experiments e on e.id = s.experiment_id join proposals p on p.id = e.proposal_id",
            Key::Beamline => " join experiments e on e.id = s.experiment_id",
            Key::Image => " join images i on i.id = s.image_id",
        }
    }
}

/// The usage rows from month `from` to month `to` (UTC wall-clock month starts), by
/// month then key.
///
/// At a facility's scale (a million sessions) the work is per session: only the sessions
/// that ran within `from`..`to` are read (those still running or stopped since `from`,
/// started before the month after `to`), only the key's tables are joined, and the rows
/// are grouped by the month's timestamp before it becomes text.
pub async fn usage(
    db: impl PgExecutor<'_>,
    key: Key,
    from: Option<PrimitiveDateTime>,
    to: Option<PrimitiveDateTime>,
) -> sqlx::Result<Vec<UsageRow>> {
    // Times become UTC wall-clock timestamps so that month arithmetic does not depend on
    // the connection's time zone.
    let mut q = QueryBuilder::<Postgres>::new("select to_char(month, 'YYYY-MM') as month, case when ");
    q.push_bind(matches!(key, Key::Month));
    q.push(
        " then to_char(month, 'YYYY-MM') else key end as key, sessions, cpu_hours, gpu_hours
     from (
         with spans as (select s.cpu_millis, s.gpus, ",
    );
    q.push(key.column());
    q.push(
        " as key,
                s.started_at at time zone 'UTC' as a,
                greatest(coalesce(s.stopped_at, now()), s.started_at) at time zone 'UTC' as b
         from sessions s",
    );
    q.push(key.joins());
    q.push(" where s.started_at is not null");
    if let Some(from) = from {
        q.push(" and (s.stopped_at is null or s.stopped_at >= ").push_bind(from).push(" at time zone 'UTC')");
    }
    if let Some(to) = to {
        q.push(" and s.started_at < (").push_bind(to).push(" + interval '1 month') at time zone 'UTC'");
    }
    q.push(
        "), pieces as (
         select sp.*, m as month, greatest(sp.a, m) as pa, least(sp.b, m + interval '1 month') as pb
         from spans sp, generate_series(date_trunc('month', sp.a), date_trunc('month', sp.b), interval '1 month') m
     )
     select month, key,
            count(*) filter (where date_trunc('month', a) = month) as sessions,
            coalesce(sum(extract(epoch from pb - pa) * cpu_millis) / 3600000, 0)::float8 as cpu_hours,
            coalesce(sum(extract(epoch from pb - pa) * gpus) / 3600, 0)::float8 as gpu_hours
     from pieces
     where (pb > pa or date_trunc('month', a) = month)",
    );
    if let Some(from) = from {
        q.push(" and month >= ").push_bind(from);
    }
    if let Some(to) = to {
        q.push(" and month <= ").push_bind(to);
    }
    q.push(" group by month, key) g order by 1, 2");
    q.build_query_as().fetch_all(db).await
}

#[derive(Serialize, ToSchema, sqlx::FromRow, Debug, Clone, PartialEq)]
pub struct UsageRow {
    /// `YYYY-MM`.
    pub month: String,
    /// The user, proposal, beamline or image (the month again when grouping by month).
    pub key: String,
    /// Sessions started in the month.
    pub sessions: i64,
    pub cpu_hours: f64,
    pub gpu_hours: f64,
}
