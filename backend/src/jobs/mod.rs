//! Batch jobs (e.g. a tomography reconstruction): a session of kind `job` plus its
//! parameters, exit code and log.

pub mod db;
pub mod outputs;
pub mod routes;
pub mod views;
