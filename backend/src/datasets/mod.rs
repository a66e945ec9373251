//! Datasets: beamline scientists (and admins) link folders under the data root to
//! experiments, and anyone searches the datasets of the proposals they may see.

pub mod path;
pub mod routes;
pub mod views;
