//! Quotas: what a user (role defaults, overridden field by field per user) and a proposal
//! (all members together) may hold at once. Checked at launch inside the launch's
//! transaction, after locking the user's and the proposal's rows, so concurrent launches
//! queue up and each sees the sessions the previous ones added.

pub mod routes;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{AppError, Result};

/// Effective limits; `None` is unlimited (or, for the times, the server default).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Limits {
    pub max_sessions: Option<i32>,
    pub max_cpu_millis: Option<i32>,
    pub max_memory_mib: Option<i32>,
    pub max_gpus: Option<i32>,
    pub lifetime_minutes: Option<i32>,
    pub idle_minutes: Option<i32>,
}

/// What a launch asks for.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub cpu_millis: i32,
    pub memory_mib: i32,
    pub gpus: i32,
}

/// What a user (or a proposal) holds now: sessions that have not ended.
#[derive(Clone, Debug, Default, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Usage {
    pub sessions: i64,
    pub cpu_millis: i64,
    pub memory_mib: i64,
    pub gpus: i64,
}

/// What the user holds now.
pub async fn usage_of_user(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<Usage> {
    sqlx::query_as(&format!(
        "select count(*) as sessions, coalesce(sum(cpu_millis), 0)::bigint as cpu_millis,
                coalesce(sum(memory_mib), 0)::bigint as memory_mib, coalesce(sum(gpus), 0)::bigint as gpus
         from sessions where owner_id = $1 and state in {}",
        crate::sessions::db::ACTIVE
    ))
    .bind(user_id)
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
                coalesce(u.lifetime_minutes, r.lifetime_minutes) as lifetime_minutes,
                coalesce(u.idle_minutes, r.idle_minutes) as idle_minutes
         from (select 1) one
         left join quotas r on r.scope = 'role' and r.role = $2
         left join quotas u on u.scope = 'user' and u.user_id = $1",
    )
    .bind(user_id)
    .bind(role)
    .fetch_one(conn)
    .await
}

/// Locks the user's and the proposal's rows (always in that order, so two launches never
/// wait on each other crosswise) and refuses the launch with 409 naming the first limit
/// it would pass. Returns the user's limits.
pub async fn check_launch(
    conn: &mut PgConnection,
    user_id: Uuid,
    role: &str,
    proposal_id: Uuid,
    request: Request,
) -> Result<Limits> {
    // `no key update` does not block the inserts elsewhere that only reference the rows.
    sqlx::query("select 1 from users where id = $1 for no key update").bind(user_id).execute(&mut *conn).await?;
    sqlx::query("select 1 from proposals where id = $1 for no key update")
        .bind(proposal_id)
        .execute(&mut *conn)
        .await?;

    let limits = for_user(conn, user_id, role).await?;
    let usage = usage_of_user(conn, user_id).await?;
    check(&limits, &usage, request, "")?;

    let proposal: Option<(Limits, String)> = sqlx::query_as::<
        _,
        (Option<i32>, Option<i32>, Option<i32>, Option<i32>, String),
    >(
        "select q.max_sessions, q.max_cpu_millis, q.max_memory_mib, q.max_gpus, p.identifier
         from quotas q join proposals p on p.id = q.proposal_id where q.scope = 'proposal' and q.proposal_id = $1",
    )
    .bind(proposal_id)
    .fetch_optional(&mut *conn)
    .await?
    .map(|(s, c, m, g, identifier)| {
        (Limits { max_sessions: s, max_cpu_millis: c, max_memory_mib: m, max_gpus: g, ..Limits::default() }, identifier)
    });
    if let Some((proposal_limits, identifier)) = proposal {
        let usage: Usage = sqlx::query_as(&format!(
            "select count(*) as sessions, coalesce(sum(s.cpu_millis), 0)::bigint as cpu_millis,
                    coalesce(sum(s.memory_mib), 0)::bigint as memory_mib, coalesce(sum(s.gpus), 0)::bigint as gpus
             from sessions s join experiments e on e.id = s.experiment_id
             where e.proposal_id = $1 and s.state in {}",
            crate::sessions::db::ACTIVE
        ))
        .bind(proposal_id)
        .fetch_one(&mut *conn)
        .await?;
        check(&proposal_limits, &usage, request, &format!("proposal {identifier}: "))?;
    }
    Ok(limits)
}

fn check(limits: &Limits, usage: &Usage, request: Request, prefix: &str) -> Result<()> {
    let over = |limit: Option<i32>, used: i64, wanted: i32| limit.filter(|l| used + i64::from(wanted) > i64::from(*l));
    if let Some(limit) = over(limits.max_sessions, usage.sessions, 1) {
        return Err(AppError::Conflict(format!("over quota: {prefix}{} of {limit} sessions in use", usage.sessions)));
    }
    if let Some(limit) = over(limits.max_cpu_millis, usage.cpu_millis, request.cpu_millis) {
        return Err(AppError::Conflict(format!(
            "over quota: {prefix}{} of {} CPUs in use, this flavour needs {}",
            cores(usage.cpu_millis),
            cores(i64::from(limit)),
            cores(i64::from(request.cpu_millis))
        )));
    }
    if let Some(limit) = over(limits.max_memory_mib, usage.memory_mib, request.memory_mib) {
        return Err(AppError::Conflict(format!(
            "over quota: {prefix}{} of {} GiB of memory in use, this flavour needs {}",
            gib(usage.memory_mib),
            gib(i64::from(limit)),
            gib(i64::from(request.memory_mib))
        )));
    }
    if let Some(limit) = over(limits.max_gpus, usage.gpus, request.gpus) {
        return Err(AppError::Conflict(format!(
            "over quota: {prefix}{} of {limit} GPUs in use, this flavour needs {}",
            usage.gpus, request.gpus
        )));
    }
    Ok(())
}

fn cores(millis: i64) -> String {
    let s = format!("{:.1}", millis as f64 / 1000.0);
    s.strip_suffix(".0").map(String::from).unwrap_or(s)
}

fn gib(mib: i64) -> String {
    let s = format!("{:.1}", mib as f64 / 1024.0);
    s.strip_suffix(".0").map(String::from).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_limit_passed() {
        let limits = Limits { max_sessions: Some(2), max_cpu_millis: Some(8000), ..Limits::default() };
        let request = Request { cpu_millis: 4000, memory_mib: 4096, gpus: 0 };
        let full = Usage { sessions: 2, cpu_millis: 4000, ..Usage::default() };
        assert_eq!(check(&limits, &full, request, "").unwrap_err().to_string(), "over quota: 2 of 2 sessions in use");
        let cpu = Usage { sessions: 1, cpu_millis: 6000, ..Usage::default() };
        assert_eq!(
            check(&limits, &cpu, request, "").unwrap_err().to_string(),
            "over quota: 6 of 8 CPUs in use, this flavour needs 4"
        );
        assert!(check(&limits, &Usage { sessions: 1, cpu_millis: 4000, ..Usage::default() }, request, "").is_ok());
        assert!(check(&Limits::default(), &full, request, "").is_ok());
    }
}
