//! daas: data analysis as a service for light sources. The library holds everything; the
//! binary in `main.rs` only parses the command line and calls in.
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod background;
pub mod beamlines;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod datasets;
pub mod db;
pub mod demo;
pub mod devdb;
pub mod error;
pub mod jobs;
pub mod proposals;
pub mod proxy;
pub mod quotas;
pub mod reconciler;
pub mod router;
pub mod runtime;
pub mod sessions;
pub mod state;
pub mod telemetry;
pub mod tokens;
pub mod web;

pub use router::app;
pub use state::AppState;
