//! The admin domain's SQL, one module per section; the section modules (`admin/images.rs`
//! and the rest) check input, hold the transaction and write the audit event. Queries with
//! a dynamic part are built with `QueryBuilder::push_bind`; session states are bound
//! (`SessionState`), never spelled.

pub mod audit_log;
pub mod flavours;
pub mod images;
pub mod notices;
pub mod quotas;
pub mod sessions;
pub mod usage;
pub mod users;

use sqlx::PgConnection;
use uuid::Uuid;

/// A catalogue table whose rows sessions refer to (`sessions.image_id`,
/// `sessions.flavour_id`), so that a row some session used cannot be deleted.
#[derive(Clone, Copy)]
pub enum Catalogue {
    Image,
    Flavour,
}

impl Catalogue {
    /// `image` or `flavour`: the audit log's object type.
    pub fn kind(self) -> &'static str {
        match self {
            Catalogue::Image => "image",
            Catalogue::Flavour => "flavour",
        }
    }

    /// Locks the row; its name, `None` when there is no such row.
    pub async fn lock_name(self, tx: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<String>> {
        let sql = match self {
            Catalogue::Image => "select name from images where id = $1 for update",
            Catalogue::Flavour => "select name from flavours where id = $1 for update",
        };
        sqlx::query_scalar(sql).bind(id).fetch_optional(tx).await
    }

    /// How many sessions, of any state, refer to the row.
    pub async fn sessions(self, tx: &mut PgConnection, id: Uuid) -> sqlx::Result<i64> {
        let sql = match self {
            Catalogue::Image => "select count(*) from sessions where image_id = $1",
            Catalogue::Flavour => "select count(*) from sessions where flavour_id = $1",
        };
        sqlx::query_scalar(sql).bind(id).fetch_one(tx).await
    }

    pub async fn delete(self, tx: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
        let sql = match self {
            Catalogue::Image => "delete from images where id = $1",
            Catalogue::Flavour => "delete from flavours where id = $1",
        };
        sqlx::query(sql).bind(id).execute(tx).await?;
        Ok(())
    }
}

// Defaults of the fields of the admin's inputs (`#[serde(default = ...)]`).

/// Every role (the default of `allowed_roles`).
pub(crate) fn all_roles() -> Vec<String> {
    vec!["user".into(), "scientist".into(), "admin".into()]
}

pub(crate) fn yes() -> bool {
    true
}

pub(crate) fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

pub(crate) fn empty_array() -> serde_json::Value {
    serde_json::json!([])
}
