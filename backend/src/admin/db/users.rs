//! The users' queries, as the admin sees them.

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::sessions::lifecycle::SessionState;

/// `select ... from users u`, each user with their beamlines and active sessions; the
/// caller pushes the `where` and what follows.
fn select<'a>() -> QueryBuilder<'a, Postgres> {
    let mut q = QueryBuilder::new(
        "select u.id, u.username, u.display_name, u.email, u.affiliation, u.role, u.enabled,
            u.password_hash is not null as has_password,
            array(select b.beamline from beamline_staff b where b.user_id = u.id order by b.beamline) as beamlines,
            (select count(*) from sessions s where s.owner_id = u.id and s.state = any(",
    );
    q.push_bind(SessionState::ACTIVE);
    q.push(")) as active_sessions, u.created_at from users u");
    q
}

/// What a search matches.
pub struct Search<'a> {
    /// A `like` pattern matched against the username, name, email and affiliation.
    pub pattern: Option<String>,
    pub role: Option<&'a str>,
    pub enabled: Option<bool>,
}

/// The users matching `search`, by username, `limit` from `offset`.
pub async fn search(
    db: impl PgExecutor<'_>,
    search: &Search<'_>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<UserRow>> {
    let mut q = select();
    push_matching(&mut q, search);
    q.push(" order by u.username limit ").push_bind(limit).push(" offset ").push_bind(offset);
    q.build_query_as().fetch_all(db).await
}

/// How many users match `search`.
pub async fn count(db: impl PgExecutor<'_>, search: &Search<'_>) -> sqlx::Result<i64> {
    let mut q = QueryBuilder::new("select count(*) from users u");
    push_matching(&mut q, search);
    q.build_query_scalar().fetch_one(db).await
}

fn push_matching<'a>(q: &mut QueryBuilder<'a, Postgres>, search: &Search<'a>) {
    q.push(" where true");
    if let Some(pattern) = &search.pattern {
        q.push(" and (u.username ilike ")
            .push_bind(pattern.clone())
            .push(" or u.display_name ilike ")
            .push_bind(pattern.clone())
            .push(" or u.email ilike ")
            .push_bind(pattern.clone())
            .push(" or u.affiliation ilike ")
            .push_bind(pattern.clone())
            .push(")");
    }
    if let Some(role) = search.role {
        q.push(" and u.role = ").push_bind(role);
    }
    if let Some(enabled) = search.enabled {
        q.push(" and u.enabled = ").push_bind(enabled);
    }
}

pub async fn find(db: impl PgExecutor<'_>, username: &str) -> sqlx::Result<UserRow> {
    let mut q = select();
    q.push(" where u.username = ").push_bind(username.to_owned());
    q.build_query_as().fetch_one(db).await
}

/// The latest 100 sessions the user owns.
pub async fn sessions_of(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<UserSession>> {
    sqlx::query_as(
        "select s.id, s.kind, s.state, i.name as image, p.identifier as proposal, e.code as experiment,
                s.created_at, s.stopped_at
         from sessions s join images i on i.id = s.image_id join experiments e on e.id = s.experiment_id
              join proposals p on p.id = e.proposal_id
         where s.owner_id = $1 order by s.created_at desc limit 100",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// The user's API tokens, newest first.
pub async fn tokens_of(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<TokenRow>> {
    sqlx::query_as(
        "select id, name, created_at, last_used_at, expires_at, revoked_at from api_tokens
         where user_id = $1 order by created_at desc",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// Locks the user's row: their id, role and whether they are enabled; `None` when there
/// is no such user.
pub async fn lock(tx: &mut PgConnection, username: &str) -> sqlx::Result<Option<(Uuid, String, bool)>> {
    sqlx::query_as("select id, role, enabled from users where username = $1 for update")
        .bind(username)
        .fetch_optional(tx)
        .await
}

pub async fn set_role(tx: &mut PgConnection, id: Uuid, role: &str) -> sqlx::Result<()> {
    sqlx::query("update users set role = $2, updated_at = now() where id = $1").bind(id).bind(role).execute(tx).await?;
    Ok(())
}

/// Replaces the beamlines the user looks after.
pub async fn set_beamlines(tx: &mut PgConnection, id: Uuid, beamlines: &[String]) -> sqlx::Result<()> {
    sqlx::query("delete from beamline_staff where user_id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query("insert into beamline_staff (user_id, beamline) select $1, unnest($2::text[])")
        .bind(id)
        .bind(beamlines)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub affiliation: Option<String>,
    /// `user`, `scientist` or `admin`.
    pub role: String,
    pub enabled: bool,
    /// Local password login possible (otherwise only single sign-on).
    pub has_password: bool,
    pub beamlines: Vec<String>,
    /// Sessions not yet stopped.
    pub active_sessions: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct UserSession {
    pub id: Uuid,
    pub kind: String,
    pub state: String,
    pub image: String,
    pub proposal: String,
    pub experiment: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub stopped_at: Option<OffsetDateTime>,
}

/// An API token as the admin sees it: never its secret, nor its hash.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}
