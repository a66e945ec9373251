//! The proxies' queries: the one-time tickets and the cookies of session origins, where a
//! running notebook answers, and the activity the relays note.

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::sessions::lifecycle::SessionState;

/// Records a ticket (its hash) that lets `user` enter `session`'s origin once, within `ttl_s`.
pub async fn create_ticket(
    db: impl PgExecutor<'_>,
    hash: &[u8],
    session: Uuid,
    user: Uuid,
    ttl_s: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into session_tickets (token_hash, session_id, user_id, expires_at)
         values ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(hash)
    .bind(session)
    .bind(user)
    .bind(f64::from(ttl_s))
    .execute(db)
    .await?;
    Ok(())
}

/// Uses up a ticket: `(session, user, still valid)`, `None` when there is no such ticket.
pub async fn take_ticket(conn: &mut PgConnection, hash: &[u8]) -> sqlx::Result<Option<(Uuid, Uuid, bool)>> {
    sqlx::query_as(
        "delete from session_tickets where token_hash = $1 returning session_id, user_id, expires_at > now()",
    )
    .bind(hash)
    .fetch_optional(conn)
    .await
}

/// Records a session origin's cookie (its hash) for `user`, valid `ttl_h` hours.
pub async fn create_cookie(
    conn: &mut PgConnection,
    hash: &[u8],
    session: Uuid,
    user: Uuid,
    ttl_h: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into session_cookies (token_hash, session_id, user_id, expires_at)
         values ($1, $2, $3, now() + make_interval(hours => $4))",
    )
    .bind(hash)
    .bind(session)
    .bind(user)
    .bind(ttl_h)
    .execute(conn)
    .await?;
    Ok(())
}

/// Who holds a session origin's cookie, as the notebook sees them.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Visitor {
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub role: String,
}

/// The user of a valid cookie of `session`, while they are an enabled, accepted member (the
/// proxy keeps guests out of notebooks, and lets them only look at web apps).
pub async fn cookie_user(db: impl PgExecutor<'_>, hash: &[u8], session: Uuid) -> sqlx::Result<Option<Visitor>> {
    sqlx::query_as(
        "select c.user_id, u.username, u.display_name, m.role from session_cookies c
         join session_members m on m.session_id = c.session_id and m.user_id = c.user_id
              and m.accepted_at is not null
         join users u on u.id = c.user_id and u.enabled
         where c.token_hash = $1 and c.session_id = $2 and c.expires_at > now()",
    )
    .bind(hash)
    .bind(session)
    .fetch_optional(db)
    .await
}

/// Where a running notebook or web app answers, its kind and its secret: `(kind,
/// endpoint, secret)`.
pub async fn route(db: impl PgExecutor<'_>, session: Uuid) -> sqlx::Result<Option<(String, String, String)>> {
    sqlx::query_as(
        "select kind, endpoint, secret from sessions
         where id = $1 and kind in ('notebook', 'webapp') and state = $2 and endpoint is not null
           and secret is not null",
    )
    .bind(session)
    .bind(SessionState::Running)
    .fetch_optional(db)
    .await
}

/// The session's kind (`None`: no such session).
pub async fn kind_of(db: impl PgExecutor<'_>, session: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("select kind from sessions where id = $1").bind(session).fetch_optional(db).await
}

/// Whether `user` may still be in the notebook: it runs, and they are an enabled, accepted
/// member who is not a guest.
pub async fn may_stay(db: impl PgExecutor<'_>, session: Uuid, user: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "select exists (select 1 from sessions s
         join session_members m on m.session_id = s.id and m.user_id = $2 and m.role <> 'guest'
              and m.accepted_at is not null
         join users u on u.id = m.user_id and u.enabled
         where s.id = $1 and s.state = $3)",
    )
    .bind(session)
    .bind(user)
    .bind(SessionState::Running)
    .fetch_one(db)
    .await
}

/// The running notebooks.
pub async fn running_notebooks(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar("select id from sessions where kind = 'notebook' and state = $1 and endpoint is not null")
        .bind(SessionState::Running)
        .fetch_all(db)
        .await
}

/// Moves each session's activity forward to when its server last saw work (never back).
pub async fn note_work(db: impl PgExecutor<'_>, seen: &[(Uuid, OffsetDateTime)]) -> sqlx::Result<()> {
    let (ids, times): (Vec<Uuid>, Vec<OffsetDateTime>) = seen.iter().copied().unzip();
    sqlx::query(
        "update sessions s set last_activity_at = w.at from unnest($1::uuid[], $2::timestamptz[]) w(id, at)
         where s.id = w.id and w.at > s.last_activity_at",
    )
    .bind(ids)
    .bind(times)
    .execute(db)
    .await?;
    Ok(())
}

/// Notes activity in the sessions now (idle limits count from it).
pub async fn touch(db: impl PgExecutor<'_>, sessions: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query("update sessions set last_activity_at = now() where id = any($1)").bind(sessions).execute(db).await?;
    Ok(())
}
