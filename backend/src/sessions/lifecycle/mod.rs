//! A session's life, from launch to its end.

mod state;

pub use state::SessionState;
