//! What every route uses: extractors that turn bad input into our 4xx shape, and the
//! caller's identity.

pub mod auth;
pub mod extract;

pub use auth::CurrentUser;
pub use extract::{Json, Path, Query};
