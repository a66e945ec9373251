//! A beamline's staff and the sessions on their beamline: the list the admin console shows
//! of every session ("all sessions"), narrowed to the experiments of one beamline, for the
//! scientists who look after it (`beamline_staff`). They may list and stop those sessions;
//! extending a lifetime stays with the admins, since it overrides the lifetime quota.
//!
//! To anyone who is not on the beamline's staff (nor an admin) these routes do not exist:
//! 404, so they do not tell which beamlines exist or what runs there.

pub mod db;
pub mod routes;
pub mod views;

use sqlx::PgExecutor;

use crate::auth::identity::CurrentUser;
use crate::error::{AppError, Result};

/// Passes when `user` may see the sessions of `beamline`: a scientist on its staff, or an
/// admin. Everyone else gets 404.
pub async fn check_staff(db: impl PgExecutor<'_>, user: &CurrentUser, beamline: &str) -> Result<()> {
    if db::is_staff(db, user, beamline).await? {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}
