//! Who is asking: API tokens, passwords and user accounts.

pub mod password;
pub mod tokens;
pub mod users;
