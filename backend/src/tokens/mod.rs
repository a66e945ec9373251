//! API tokens as users manage them: create (the secret shown once), list, revoke; admins
//! may do so for anyone.

pub mod db;
pub mod routes;
pub mod views;
