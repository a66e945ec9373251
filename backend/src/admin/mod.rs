//! The admin console: the catalogue (images, flavours), quotas, users, every session,
//! usage, the audit log, notices and proposal imports. Every API handler takes
//! `AdminUser` (every page `AdminPage`), and every change writes one audit event in the
//! change's transaction.
//!
//! Laid out by section, in three layers: `admin/<section>.rs` holds the section's API
//! handlers (`/api/v1/admin/...`, listed in `routes.rs`) and its rules (checks,
//! transactions, audit); `views/<section>.rs` its page under `/admin` (listed in
//! `views/mod.rs`), which calls the same functions; `db/<section>.rs` its SQL (every
//! session's queries stay in `sessions.rs`, beside the session lifecycle they belong to).

pub mod audit_log;
pub mod db;
pub mod flavours;
pub mod images;
pub mod import;
pub mod notices;
pub mod oci;
pub mod quotas;
pub mod routes;
pub mod sessions;
pub mod usage;
pub mod users;
pub mod views;

use crate::error::{AppError, Result};
use db::Catalogue;

/// Checks a list of roles (`user`, `scientist`, `admin`) and removes repeats.
pub(crate) fn check_roles(field: &str, roles: Vec<String>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for role in roles {
        if crate::auth::identity::Role::parse(&role).is_none() {
            return Err(AppError::invalid(field, format!("unknown role {role:?} (user, scientist or admin)")));
        }
        if !out.contains(&role) {
            out.push(role);
        }
    }
    Ok(out)
}

/// A trimmed name of 1 to 100 characters.
pub(crate) fn check_name(field: &str, name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::invalid(field, "must be 1 to 100 characters"));
    }
    Ok(name.to_owned())
}

/// The answer when a catalogue entry's name (`kind` is `image` or `flavour`) is another's.
pub(crate) fn name_taken(kind: &str, name: &str) -> AppError {
    AppError::Conflict(format!("the name is already taken: there is already a {kind} called {name:?}"))
}

/// A count that must not be negative.
pub(crate) fn check_non_negative(field: &str, value: i32) -> Result<i32> {
    if value < 0 {
        return Err(AppError::invalid(field, "must not be negative"));
    }
    Ok(value)
}

/// A size that must be positive.
pub(crate) fn check_positive(field: &str, value: i32) -> Result<i32> {
    if value <= 0 {
        return Err(AppError::invalid(field, "must be more than 0"));
    }
    Ok(value)
}

/// Deletes a catalogue entry that no session ever used, with its audit event; 409 when
/// one did (disable it instead, since sessions and usage refer to it). A launch racing the
/// delete cannot orphan a session: its insert holds a key-share lock on the row through
/// the foreign key, so the delete waits and then finds it.
pub(crate) async fn delete_unused(
    db: &sqlx::PgPool,
    actor: &crate::audit::Actor,
    table: Catalogue,
    id: uuid::Uuid,
) -> Result<()> {
    let kind = table.kind();
    let mut tx = db.begin().await?;
    let name = table.lock_name(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let sessions = table.sessions(&mut tx, id).await?;
    if sessions > 0 {
        return Err(AppError::Conflict(format!(
            "{sessions} session(s) refer to {kind} {name:?}; disable it instead of deleting it"
        )));
    }
    table.delete(&mut tx, id).await?;
    let action = format!("{kind}.delete");
    crate::audit::record(&mut *tx, actor, &action, kind, &id.to_string(), serde_json::json!({"name": name})).await?;
    tx.commit().await?;
    Ok(())
}

/// Reads `page`/`per_page` like the public lists do.
pub(crate) use crate::proposals::routes::paginate;
pub(crate) use crate::proposals::routes::Page;

/// `%` and `_` typed in a search are literal characters, not wildcards.
pub(crate) fn like_pattern(s: &str) -> String {
    format!("%{}%", s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

/// An optional text filter: blank means no filter.
pub(crate) fn filter(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A CSV cell a spreadsheet will not run: text starting with `=`, `+`, `-`, `@` or a
/// control character gets a leading `'` (OWASP's advice on CSV injection), since names,
/// messages and metadata in exports come from users.
pub(crate) fn spreadsheet_safe(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spreadsheet_formulas_are_defused() {
        assert_eq!(super::spreadsheet_safe("=HYPERLINK(\"x\")".into()), "'=HYPERLINK(\"x\")");
        assert_eq!(super::spreadsheet_safe("@SUM(A1)".into()), "'@SUM(A1)");
        assert_eq!(super::spreadsheet_safe("alice".into()), "alice");
        assert_eq!(super::spreadsheet_safe("{\"a\": 1}".into()), "{\"a\": 1}");
    }
}
