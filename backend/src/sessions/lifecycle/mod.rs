//! A session's life in one place, from the handler to the runtime and back. Every change
//! is a transition (`state::transition`) in a Postgres transaction that first locks the row
//! and checks its state, or updates only where the state is still the one expected; so
//! the launch task, the reconciler and a second daas never apply the same change twice,
//! and a restarted daas finds everything in Postgres.
//!
//! - **Launch** (`launch`): the request is checked and recorded (`starting`), then `start`
//!   hands it to the runtime in the background and watches it until it answers
//!   (`running`) or fails.
//! - **Observe** (`observe`): what the runtime sees of a live session (progress, an
//!   answer, an exit, its disappearance) becomes a step (`decide`, no I/O) that `apply`
//!   carries out. The reconciler (`crate::reconciler`) does this for every live session at
//!   each pass.
//! - **Stop** (`stop`): whoever asks (a member, an admin, a beamline's staff, expiry)
//!   moves it to `stopping` (`request_stop`) and wakes the reconciler, which stops what
//!   runs and marks it `stopped` (`finish_stop`; the launch task does it for a session it
//!   is still starting). A session that ends by itself is ended by `end`.
//! - **Expiry** (`expiry`): a running session past its lifetime or idle limit is warned,
//!   then stopped; an admin may move its end (`extend`).
//!
//! The states themselves, and the only place their names are spelled, are in `state`; how
//! the lifecycle wakes the reconciler and tells it which launches are under way, in
//! `signals`.

pub mod expiry;
pub mod launch;
pub mod observe;
pub mod signals;
mod state;
pub mod stop;

pub use state::SessionState;
