//! Sessions: desktops, notebooks and jobs launched on the data of an experiment, their
//! lifecycle (requested, starting, running, stopping, stopped or failed) and events.

pub mod access;
pub mod control;
pub mod db;
pub mod events;
pub mod lifecycle;
pub mod members;
pub mod node_report;
pub mod routes;
pub mod sharing;
pub mod views;
