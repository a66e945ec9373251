//! The catalogue: images (what can be launched) and flavours (how big).

pub mod routes;
