//! Integration tests of the HTTP API against a real PostgreSQL: each `#[sqlx::test]` gets
//! its own migrated database, loaded with the demo facility. Modules mirror the routes.

mod common;

mod admin;
mod admin_pages;
mod beamlines;
mod catalogue;
mod cluster;
mod collaboration;
mod crash_windows;
mod datasets;
mod desktop;
mod health;
mod hostile;
mod import;
mod input;
mod invitations;
mod login;
mod me;
mod model;
mod notebook;
mod oidc;
mod pages;
mod proposals;
mod recon;
mod reconciler;
mod reserved_identifiers;
mod session_pages;
mod sessions;
mod slurm;
mod time_limits;
mod tokens;
mod usage;
mod webapp;
