//! Quotas: what a user (role defaults, overridden field by field per user) and a proposal
//! (all members together) may hold at once, and how many GPU-hours they may use in a
//! calendar month (UTC). Checked at launch inside the launch's transaction, after locking
//! the user's and the proposal's rows, so concurrent launches queue up and each sees the
//! sessions the previous ones added.
//!
//! The GPU-hours rule: a launch of a flavour with GPUs is refused once the GPU-hours used
//! this month (finished sessions plus running ones up to now) have reached the limit. A
//! session already running is not cut short when it passes the limit (its lifetime bounds
//! it); flavours without GPUs are never refused for GPU-hours. A limit of 0 allows no GPU
//! sessions at all.

pub mod db;
pub mod routes;

use sqlx::PgConnection;
use time::{Date, Month, OffsetDateTime};
use uuid::Uuid;

use crate::error::{AppError, Result};

/// Effective limits; `None` is unlimited (or, for the times, the server default).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Limits {
    pub max_sessions: Option<i32>,
    pub max_cpu_millis: Option<i32>,
    pub max_memory_mib: Option<i32>,
    pub max_gpus: Option<i32>,
    /// GPU-hours per calendar month (UTC): once used up, no more GPU launches that month.
    pub max_gpu_hours_month: Option<i32>,
    /// Minutes a new session lives.
    pub lifetime_minutes: Option<i32>,
    /// Minutes without use after which a desktop or notebook is stopped.
    pub idle_minutes: Option<i32>,
    /// Minutes in all the user may add to one of their sessions by asking.
    pub extension_minutes: Option<i32>,
}

/// What a launch asks for.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub cpu_millis: i32,
    pub memory_mib: i32,
    pub gpus: i32,
}

/// What a user (or a proposal) holds now: sessions that have not ended; and the GPU-hours
/// used this month.
#[derive(Clone, Debug, Default, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Usage {
    pub sessions: i64,
    pub cpu_millis: i64,
    pub memory_mib: i64,
    pub gpus: i64,
    /// GPU-hours since the first of this month (UTC), running sessions counted up to now.
    pub gpu_hours_month: f64,
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
    db::lock_holders(conn, user_id, proposal_id).await?;

    let limits = db::for_user(conn, user_id, role).await?;
    let usage = db::usage_of_user(conn, user_id).await?;
    check(&limits, &usage, request, "")?;

    if let Some((proposal_limits, identifier)) = db::for_proposal(conn, proposal_id).await? {
        let usage = db::usage_of_proposal(conn, proposal_id).await?;
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
    if let Some(limit) =
        limits.max_gpu_hours_month.filter(|l| request.gpus > 0 && usage.gpu_hours_month >= f64::from(*l))
    {
        return Err(AppError::Conflict(format!(
            "over quota: {prefix}{} of {limit} GPU-hours used this month; GPU flavours can be launched again \
             from {} (UTC), flavours without GPUs still can",
            hours(usage.gpu_hours_month),
            next_month(OffsetDateTime::now_utc().date())
        )));
    }
    Ok(())
}

/// GPU-hours for people: one decimal, rounded down so that "40 of 40" is not shown while
/// some minutes are left.
pub fn hours(h: f64) -> String {
    let s = format!("{:.1}", (h * 10.0).floor() / 10.0);
    s.strip_suffix(".0").map(String::from).unwrap_or(s)
}

/// The first day of the month after `day`'s: when the GPU-hours count starts again.
pub fn next_month(day: Date) -> Date {
    let (year, month) = match day.month() {
        Month::December => (day.year() + 1, Month::January),
        m => (day.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1).unwrap_or(day)
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

    #[test]
    fn gpu_hours_refuse_only_gpu_launches_once_used_up() {
        let limits = Limits { max_gpu_hours_month: Some(40), ..Limits::default() };
        let gpu = Request { cpu_millis: 4000, memory_mib: 4096, gpus: 1 };
        let cpu_only = Request { gpus: 0, ..gpu };
        let used_up = Usage { gpu_hours_month: 40.02, ..Usage::default() };
        let message = check(&limits, &used_up, gpu, "proposal 20180101: ").unwrap_err().to_string();
        assert!(message.starts_with("over quota: proposal 20180101: 40 of 40 GPU-hours used this month;"), "{message}");
        assert!(check(&limits, &used_up, cpu_only, "").is_ok());
        assert!(check(&limits, &Usage { gpu_hours_month: 39.9, ..Usage::default() }, gpu, "").is_ok());
        let none = Limits { max_gpu_hours_month: Some(0), ..Limits::default() };
        assert!(check(&none, &Usage::default(), gpu, "").is_err(), "0 GPU-hours allows no GPU session");
    }

    #[test]
    fn the_count_starts_again_on_the_first() {
        use time::macros::date;
        assert_eq!(next_month(date!(2026 - 11 - 21)), date!(2026 - 12 - 01));
        assert_eq!(next_month(date!(2026 - 12 - 31)), date!(2027 - 01 - 01));
        assert_eq!(hours(39.96), "39.9");
        assert_eq!(hours(12.0), "12");
    }
}
