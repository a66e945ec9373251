//! Who is asking: API tokens, passwords and user accounts.

pub mod identity;
pub mod local;
pub mod me;
pub mod oidc;
pub mod password;
pub mod routes;
pub mod sessions;
pub mod tokens;
pub mod users;
