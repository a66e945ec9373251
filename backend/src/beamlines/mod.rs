//! A beamline's staff and the sessions on their beamline: the list the admin console shows
//! of every session ("all sessions"), narrowed to the experiments of one beamline, for the
//! scientists who look after it (`beamline_staff`). They may list and stop those sessions;
//! extending a lifetime stays with the admins, since it overrides the lifetime quota.
//!
//! To anyone who is not on the beamline's staff (nor an admin) these routes do not exist:
//! 404, so they do not tell which beamlines exist or what runs there.

pub mod routes;
pub mod views;

use sqlx::PgExecutor;

use crate::auth::identity::CurrentUser;
use crate::auth::identity::Role;
use crate::error::{AppError, Result};

/// Passes when `user` may see the sessions of `beamline`: a scientist on its staff, or an
/// admin. Everyone else gets 404.
pub async fn check_staff(db: impl PgExecutor<'_>, user: &CurrentUser, beamline: &str) -> Result<()> {
    let allowed = match user.role {
        Role::Admin => true,
        Role::Scientist => {
            sqlx::query_scalar("select exists (select 1 from beamline_staff where user_id = $1 and beamline = $2)")
                .bind(user.id)
                .bind(beamline)
                .fetch_one(db)
                .await?
        }
        Role::User => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}

/// The beamlines whose sessions `user` looks after, for the navigation: a scientist's
/// own beamlines (admins have the admin console instead).
pub async fn of_user(db: impl PgExecutor<'_>, user: &CurrentUser) -> sqlx::Result<Vec<String>> {
    if user.role != Role::Scientist {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("select beamline from beamline_staff where user_id = $1 order by beamline")
        .bind(user.id)
        .fetch_all(db)
        .await
}
