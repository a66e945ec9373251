//! The quotas' queries: every quota with what is in use against it, and the upsert and
//! delete of one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::sessions::lifecycle::SessionState;

#[derive(sqlx::FromRow)]
pub struct QuotaRow {
    pub id: Uuid,
    pub scope: String,
    pub subject: String,
    #[sqlx(flatten)]
    pub limits: Limits,
    #[sqlx(flatten)]
    pub in_use: Use,
}

/// The sessions `s` a quota row `q` counts: its role's users', its user's, or those on its
/// proposal's experiments.
const COUNTED: &str = "case q.scope when 'role' then s.owner_id in (select id from users where role = q.role)
                                  when 'user' then s.owner_id = q.user_id
                                  else s.experiment_id in (select id from experiments where proposal_id = q.proposal_id) end";

/// Every quota with its current use: roles first, then users, then proposals.
pub async fn all(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<QuotaRow>> {
    let mut q = QueryBuilder::<Postgres>::new(
        "select q.id, q.scope, q.subject, q.max_sessions, q.max_cpu_millis, q.max_memory_mib, q.max_gpus,
                q.max_gpu_hours_month, q.lifetime_minutes, q.idle_minutes, q.extension_minutes, u.sessions, u.cpu_millis, u.memory_mib, u.gpus, ",
    );
    q.push(crate::quotas::db::gpu_hours_this_month(COUNTED));
    q.push(
        " as gpu_hours_month
         from (select q.*, coalesce(q.role, us.username, p.identifier) as subject
               from quotas q left join users us on us.id = q.user_id left join proposals p on p.id = q.proposal_id) q
         cross join lateral (
             select count(*) as sessions, coalesce(sum(s.cpu_millis), 0)::bigint as cpu_millis,
                    coalesce(sum(s.memory_mib), 0)::bigint as memory_mib, coalesce(sum(s.gpus), 0)::bigint as gpus
             from sessions s where ",
    );
    q.push(COUNTED).push(" and s.state = any(").push_bind(SessionState::ACTIVE).push(
        ")) u
         order by case q.scope when 'role' then 0 when 'user' then 1 else 2 end, q.subject",
    );
    q.build_query_as().fetch_all(db).await
}

/// Where a quota applies.
pub enum Subject {
    Role(String),
    User(Uuid),
    Proposal(Uuid),
}

impl Subject {
    /// `role`, `user` or `proposal`: the row's scope.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Role(_) => "role",
            Subject::User(_) => "user",
            Subject::Proposal(_) => "proposal",
        }
    }

    /// The row's `role`, `user_id` and `proposal_id`.
    fn columns(&self) -> (Option<&str>, Option<Uuid>, Option<Uuid>) {
        match self {
            Subject::Role(r) => (Some(r), None, None),
            Subject::User(u) => (None, Some(*u), None),
            Subject::Proposal(p) => (None, None, Some(*p)),
        }
    }
}

pub async fn user_id(db: impl PgExecutor<'_>, username: &str) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("select id from users where username = $1").bind(username).fetch_optional(db).await
}

pub async fn proposal_id(db: impl PgExecutor<'_>, identifier: &str) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("select id from proposals where identifier = $1").bind(identifier).fetch_optional(db).await
}

/// Sets the limits of `subject`, creating its row if there was none; the row's id.
pub async fn upsert(tx: &mut PgConnection, subject: &Subject, limits: &Limits) -> sqlx::Result<Uuid> {
    // Each scope has its own partial unique index, so its own conflict target.
    let sql = match subject {
        Subject::Role(_) => UPSERT_ROLE,
        Subject::User(_) => UPSERT_USER,
        Subject::Proposal(_) => UPSERT_PROPOSAL,
    };
    let (role, user_id, proposal_id) = subject.columns();
    sqlx::query_scalar(sql)
        .bind(subject.kind())
        .bind(role)
        .bind(user_id)
        .bind(proposal_id)
        .bind(limits.max_sessions)
        .bind(limits.max_cpu_millis)
        .bind(limits.max_memory_mib)
        .bind(limits.max_gpus)
        .bind(limits.max_gpu_hours_month)
        .bind(limits.lifetime_minutes)
        .bind(limits.idle_minutes)
        .bind(limits.extension_minutes)
        .fetch_one(tx)
        .await
}

macro_rules! upsert {
    ($target:literal) => {
        concat!(
            "insert into quotas (scope, role, user_id, proposal_id, max_sessions, max_cpu_millis, max_memory_mib,
                                 max_gpus, max_gpu_hours_month, lifetime_minutes, idle_minutes, extension_minutes)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             on conflict ",
            $target,
            " do update set max_sessions = excluded.max_sessions,
                 max_cpu_millis = excluded.max_cpu_millis, max_memory_mib = excluded.max_memory_mib,
                 max_gpus = excluded.max_gpus, max_gpu_hours_month = excluded.max_gpu_hours_month,
                 lifetime_minutes = excluded.lifetime_minutes, idle_minutes = excluded.idle_minutes,
                 extension_minutes = excluded.extension_minutes, updated_at = now()
             returning id"
        )
    };
}
const UPSERT_ROLE: &str = upsert!("(role) where scope = 'role'");
const UPSERT_USER: &str = upsert!("(user_id) where scope = 'user'");
const UPSERT_PROPOSAL: &str = upsert!("(proposal_id) where scope = 'proposal'");

/// Deletes the row of `subject`; its id, `None` when it had none.
pub async fn delete(tx: &mut PgConnection, subject: &Subject) -> sqlx::Result<Option<Uuid>> {
    let (role, user_id, proposal_id) = subject.columns();
    sqlx::query_scalar(
        "delete from quotas where scope = $1 and role is not distinct from $2 and user_id is not distinct from $3
             and proposal_id is not distinct from $4
         returning id",
    )
    .bind(subject.kind())
    .bind(role)
    .bind(user_id)
    .bind(proposal_id)
    .fetch_optional(tx)
    .await
}

/// Limits; `null` is unlimited for a role or a proposal, and "as the role says" for a user.
/// The times (lifetime, idle limit, extension) are a role's or a user's only; a role's
/// `null` there is the server's default (`--session-lifetime`, `--session-idle-limit`,
/// `--session-extension-limit`).
#[derive(Serialize, Deserialize, ToSchema, sqlx::FromRow, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    pub max_sessions: Option<i32>,
    #[serde(default)]
    pub max_cpu_millis: Option<i32>,
    #[serde(default)]
    pub max_memory_mib: Option<i32>,
    #[serde(default)]
    pub max_gpus: Option<i32>,
    #[serde(default)]
    pub max_gpu_hours_month: Option<i32>,
    /// Minutes a new session lives (it is stopped then, unless extended).
    #[serde(default)]
    pub lifetime_minutes: Option<i32>,
    /// Minutes without use after which a desktop or notebook is stopped.
    #[serde(default)]
    pub idle_minutes: Option<i32>,
    /// Minutes in all a user may add to one of their sessions by asking (0: none).
    #[serde(default)]
    pub extension_minutes: Option<i32>,
}

/// What is in use against a quota now.
#[derive(Serialize, ToSchema, sqlx::FromRow, Default)]
pub struct Use {
    /// Sessions not yet stopped.
    pub sessions: i64,
    pub cpu_millis: i64,
    pub memory_mib: i64,
    pub gpus: i64,
    /// GPU-hours used since the start of this month (UTC).
    pub gpu_hours_month: f64,
}
