//! What every route uses: extractors that turn bad input into our 4xx shape, and the
//! caller's identity.

pub mod admin;
pub mod auth;
pub mod extract;
pub mod input;
pub mod page;
pub mod redirect;

pub use admin::AdminUser;
pub use auth::{ClientAddr, MaybeUser};
pub use extract::{Form, Json, Path, Query};
