//! Queries on quotas and on what sessions hold: the limits of a user (their role's row,
//! overridden field by field by their own) and of a proposal, and the usage they are
//! checked against. Sessions hold resources while in `SessionState::ACTIVE`, bound as a
//! parameter.

use sqlx::PgConnection;
use uuid::Uuid;

use super::{Limits, Usage};
use crate::sessions::lifecycle::SessionState;

/// SQL text of a scalar subquery: the GPU-hours used since the first of this month (UTC)
/// by the sessions `s` matching `$cond`. Each session counts its GPUs times the part of its
/// run (start to stop, or to now while it runs) that falls in this month; a session that
/// never started counts nothing. A macro so that the queries here stay fixed strings.
macro_rules! gpu_hours_this_month {
    ($cond:literal) => {
        concat!(
            "(select coalesce(sum(s.gpus * extract(epoch from
                  least(coalesce(s.stopped_at, now()), now()) - greatest(s.started_at, date_trunc('month', now(), 'UTC')))
                  / 3600), 0)::float8
              from sessions s where (",
            $cond,
            ") and s.gpus > 0 and s.started_at is not null
                and coalesce(s.stopped_at, now()) > date_trunc('month', now(), 'UTC'))"
        )
    };
}

/// The GPU-hours subquery of `usage_of_user` for the sessions `s` matching `cond`, for the
/// admin's quota page, which shows the same figure.
pub fn gpu_hours_this_month(cond: &str) -> String {
    format!(gpu_hours_this_month!("{}"), cond)
}

/// What the user holds now, and their GPU-hours this month.
pub async fn usage_of_user(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<Usage> {
    sqlx::query_as(concat!(
        "select count(*) as sessions, coalesce(sum(cpu_millis), 0)::bigint as cpu_millis,
                coalesce(sum(memory_mib), 0)::bigint as memory_mib, coalesce(sum(gpus), 0)::bigint as gpus, ",
        gpu_hours_this_month!("s.owner_id = $1"),
        " as gpu_hours_month
         from sessions where owner_id = $1 and state = any($2)"
    ))
    .bind(user_id)
    .bind(SessionState::ACTIVE)
    .fetch_one(conn)
    .await
}

/// What the members of a proposal hold together now, and its GPU-hours this month.
pub async fn usage_of_proposal(conn: &mut PgConnection, proposal_id: Uuid) -> sqlx::Result<Usage> {
    sqlx::query_as(concat!(
        "select count(*) as sessions, coalesce(sum(s.cpu_millis), 0)::bigint as cpu_millis,
                coalesce(sum(s.memory_mib), 0)::bigint as memory_mib, coalesce(sum(s.gpus), 0)::bigint as gpus, ",
        gpu_hours_this_month!("s.experiment_id in (select id from experiments where proposal_id = $1)"),
        " as gpu_hours_month
         from sessions s join experiments e on e.id = s.experiment_id
         where e.proposal_id = $1 and s.state = any($2)"
    ))
    .bind(proposal_id)
    .bind(SessionState::ACTIVE)
    .fetch_one(conn)
    .await
}

/// The user's limits: their role's row, each field overridden by their own row if set.
pub async fn for_user(conn: &mut PgConnection, user_id: Uuid, role: &str) -> sqlx::Result<Limits> {
    sqlx::query_as(
        "select coalesce(u.max_sessions, r.max_sessions) as max_sessions,
                coalesce(u.max_cpu_millis, r.max_cpu_millis) as max_cpu_millis,
                coalesce(u.max_memory_mib, r.max_memory_mib) as max_memory_mib,
                coalesce(u.max_gpus, r.max_gpus) as max_gpus,
                coalesce(u.max_gpu_hours_month, r.max_gpu_hours_month) as max_gpu_hours_month,
                coalesce(u.lifetime_minutes, r.lifetime_minutes) as lifetime_minutes,
                coalesce(u.idle_minutes, r.idle_minutes) as idle_minutes,
                coalesce(u.extension_minutes, r.extension_minutes) as extension_minutes
         from (select 1) one
         left join quotas r on r.scope = 'role' and r.role = $2
         left join quotas u on u.scope = 'user' and u.user_id = $1",
    )
    .bind(user_id)
    .bind(role)
    .fetch_one(conn)
    .await
}

/// The proposal's own limits (the times are the users'), with its identifier; `None` when
/// it has no quota.
pub async fn for_proposal(conn: &mut PgConnection, proposal_id: Uuid) -> sqlx::Result<Option<(Limits, String)>> {
    let row = sqlx::query_as::<_, (Option<i32>, Option<i32>, Option<i32>, Option<i32>, Option<i32>, String)>(
        "select q.max_sessions, q.max_cpu_millis, q.max_memory_mib, q.max_gpus, q.max_gpu_hours_month, p.identifier
         from quotas q join proposals p on p.id = q.proposal_id where q.scope = 'proposal' and q.proposal_id = $1",
    )
    .bind(proposal_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(s, c, m, g, h, identifier)| {
        let limits = Limits {
            max_sessions: s,
            max_cpu_millis: c,
            max_memory_mib: m,
            max_gpus: g,
            max_gpu_hours_month: h,
            ..Limits::default()
        };
        (limits, identifier)
    }))
}

/// Locks the user's and the proposal's rows, always in that order, so two launches never
/// wait on each other crosswise. `no key update` does not block the inserts elsewhere that
/// only reference the rows.
pub async fn lock_holders(conn: &mut PgConnection, user_id: Uuid, proposal_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("select 1 from users where id = $1 for no key update").bind(user_id).execute(&mut *conn).await?;
    sqlx::query("select 1 from proposals where id = $1 for no key update").bind(proposal_id).execute(conn).await?;
    Ok(())
}
