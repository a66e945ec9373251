//! What every route uses: extractors that turn bad input into our 4xx shape, and the
//! caller's identity.

pub mod auth;
pub mod extract;
pub mod page;

pub use auth::{ClientAddr, CurrentUser, MaybeUser};
pub use extract::{Json, Path, Query};
