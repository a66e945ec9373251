//! Queries on beamline staff (`beamline_staff`): who looks after which beamline.

use sqlx::PgExecutor;

use crate::auth::identity::{CurrentUser, Role};

/// Whether `user` looks after `beamline`: an admin always, a scientist on its staff, a
/// user never.
pub async fn is_staff(db: impl PgExecutor<'_>, user: &CurrentUser, beamline: &str) -> sqlx::Result<bool> {
    match user.role {
        Role::Admin => Ok(true),
        Role::Scientist => {
            sqlx::query_scalar("select exists (select 1 from beamline_staff where user_id = $1 and beamline = $2)")
                .bind(user.id)
                .bind(beamline)
                .fetch_one(db)
                .await
        }
        Role::User => Ok(false),
    }
}

/// The beamlines whose sessions `user` looks after, for the navigation: a scientist's
/// own beamlines (admins have the admin console instead; users have none).
pub async fn of_user(db: impl PgExecutor<'_>, user: &CurrentUser) -> sqlx::Result<Vec<String>> {
    if user.role != Role::Scientist {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("select beamline from beamline_staff where user_id = $1 order by beamline")
        .bind(user.id)
        .fetch_all(db)
        .await
}
