//! Who a request acts for, as the domain sees it: the user and their role. The web layer
//! finds the caller (`web::auth`); queries and the audit log take the identity from here.

use serde::Serialize;
use uuid::Uuid;

/// A logged-in, enabled user. As an extractor (`web::auth`) it answers 401 when there is
/// none.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct CurrentUser {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
}

impl CurrentUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// A user's role in daas (not in a proposal): what they may see and do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Scientist,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Scientist => "scientist",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Role::User),
            "scientist" => Some(Role::Scientist),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Role::parse(&s).ok_or_else(|| format!("unknown role {s:?}"))
    }
}
