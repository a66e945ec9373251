//! What every route uses: extractors that turn bad input into our 4xx shape, and the ones
//! that find the caller (whose identity, `CurrentUser`, is `auth::identity`'s).

pub mod admin;
pub mod auth;
pub mod extract;
pub mod input;
pub mod page;
pub mod redirect;

pub use admin::AdminUser;
pub use auth::{ClientAddr, MaybeUser};
pub use extract::{Form, Json, Path, Query};
