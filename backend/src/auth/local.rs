//! Local-password login, rate limited per account and per address. The answer never says
//! whether the account exists.

use sqlx::PgPool;
use uuid::Uuid;

use super::password;

/// Failed attempts within `WINDOW_MINUTES` after which further attempts are refused.
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 10;
pub const MAX_FAILURES_PER_ADDRESS: i64 = 50;
pub const WINDOW_MINUTES: i32 = 15;

pub enum Outcome {
    LoggedIn(Uuid),
    /// Unknown user, wrong password, disabled account or no password: all look the same.
    Refused,
    TooMany,
}

/// A hash to verify against when the account does not exist, so that a wrong username
/// takes as long as a wrong password.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| password::hash("not a password anyone has").expect("hashing works"))
}

pub async fn login(db: &PgPool, username: &str, secret: &str, remote_addr: &str) -> sqlx::Result<Outcome> {
    let username = username.trim().to_lowercase();
    let (by_account, by_address): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where username = $1), count(*) filter (where remote_addr = $2)
         from login_attempts where not succeeded and at > now() - make_interval(mins => $3)
           and (username = $1 or remote_addr = $2)",
    )
    .bind(&username)
    .bind(remote_addr)
    .bind(WINDOW_MINUTES)
    .fetch_one(db)
    .await?;
    if by_account >= MAX_FAILURES_PER_ACCOUNT || by_address >= MAX_FAILURES_PER_ADDRESS {
        return Ok(Outcome::TooMany);
    }
    let row: Option<(Uuid, Option<String>, bool)> =
        sqlx::query_as("select id, password_hash, enabled from users where username = $1")
            .bind(&username)
            .fetch_optional(db)
            .await?;
    let hash = row.as_ref().and_then(|(_, h, _)| h.clone());
    let phc = hash.clone().unwrap_or_else(|| dummy_hash().to_string());
    let secret = secret.to_string();
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let matches = tokio::task::spawn_blocking(move || password::verify(&secret, &phc)).await.unwrap_or(false);
    let ok = matches && hash.is_some() && row.as_ref().is_some_and(|(_, _, enabled)| *enabled);
    sqlx::query("insert into login_attempts (username, remote_addr, succeeded) values ($1, $2, $3)")
        .bind(&username)
        .bind(remote_addr)
        .bind(ok)
        .execute(db)
        .await?;
    Ok(match (ok, row) {
        (true, Some((id, _, _))) => Outcome::LoggedIn(id),
        _ => Outcome::Refused,
    })
}
