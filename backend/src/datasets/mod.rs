//! Datasets: beamline scientists (and admins) link folders in an experiment's storage
//! folder (below the data root) to that experiment, and anyone searches the datasets of the
//! proposals they may see. `daas check` reports stored links that break the rule.

pub mod check;
pub mod db;
pub mod path;
pub mod routes;
pub mod storage;
pub mod views;
