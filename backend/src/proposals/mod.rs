//! Proposals, their members, experiments and datasets, as the user office gives them.

pub mod db;
pub mod import;
pub mod routes;
pub mod views;
