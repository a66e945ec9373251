//! The catalogue: images (what can be launched) and flavours (how big).

pub mod db;
pub mod routes;
