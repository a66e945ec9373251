//! The fake engine: runs nothing and remembers everything. A launch is recorded and
//! answers at once (by default `Running` at an endpoint nothing listens on); what `observe`
//! reports next is whatever the caller scripts (`set`), so the lifecycle, the reconciler
//! and the API can be tested in milliseconds without processes, and daas's control plane
//! can be measured alone (`--runtime fake`). Its sessions live as long as the process.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::bail;
use uuid::Uuid;

use super::{Found, Handle, LaunchSpec, Observed, Runtime, RuntimeResult, SESSION_LABEL};

#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// What runs, and what `observe` answers of it now.
    running: HashMap<Uuid, Observed>,
    /// What a launch starts as (`None`: `Running` at `fake:{id}`).
    first: Option<Observed>,
    /// What given sessions start as, when scripted before their launch.
    scripted: HashMap<Uuid, Observed>,
    /// Why launches fail, while set.
    refusal: Option<String>,
    /// Every spec ever launched, in order.
    launched: Vec<LaunchSpec>,
    /// Every session stopped, in order (stopping one twice counts twice).
    stopped: Vec<Uuid>,
    /// Every secret rotation, `(session, new secret)`, in order.
    rotated: Vec<(Uuid, String)>,
}

impl FakeRuntime {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("the fake runtime's state")
    }

    /// What the next launches start as (e.g. `Pending`, to hold them in `starting`).
    pub fn start_as(&self, observed: Observed) {
        self.state().first = Some(observed);
    }

    /// Makes launches fail with `reason` (`None`: they succeed again).
    pub fn refuse_launches(&self, reason: Option<&str>) {
        self.state().refusal = reason.map(String::from);
    }

    /// What `observe` reports of a session from now on, or from its launch if it has not
    /// started yet (`Gone` forgets a running one, as a machine's restart would; before the
    /// launch it means nothing).
    pub fn set(&self, id: Uuid, observed: Observed) {
        let mut state = self.state();
        match state.running.get_mut(&id) {
            Some(_) if observed == Observed::Gone => {
                state.running.remove(&id);
            }
            Some(now) => *now = observed,
            // Nothing runs yet, so nothing to forget.
            None if observed == Observed::Gone => {}
            None => {
                state.scripted.insert(id, observed);
            }
        }
    }

    /// Runs a session daas did not launch (an orphan, as a crash between a launch and its
    /// record would leave).
    pub fn insert(&self, id: Uuid, observed: Observed) {
        self.state().running.insert(id, observed);
    }

    /// The specs launched so far, in order.
    pub fn launched(&self) -> Vec<LaunchSpec> {
        self.state().launched.clone()
    }

    /// The sessions stopped so far, in order.
    pub fn stopped(&self) -> Vec<Uuid> {
        self.state().stopped.clone()
    }

    /// The secrets rotated so far, `(session, new secret)`, in order.
    pub fn rotated(&self) -> Vec<(Uuid, String)> {
        self.state().rotated.clone()
    }

    /// Whether the session runs now.
    pub fn runs(&self, id: Uuid) -> bool {
        self.state().running.contains_key(&id)
    }
}

fn handle(id: Uuid) -> Handle {
    Handle(serde_json::json!({ SESSION_LABEL: id }))
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn launch(&self, spec: &LaunchSpec) -> RuntimeResult<Handle> {
        let mut state = self.state();
        if let Some(reason) = &state.refusal {
            bail!("{reason}");
        }
        let id = spec.session_id;
        let first = match state.scripted.remove(&id) {
            Some(scripted) => scripted,
            None => state.first.clone().unwrap_or_else(|| Observed::Running { endpoint: format!("fake:{id}") }),
        };
        state.launched.push(spec.clone());
        state.running.entry(id).or_insert(first);
        Ok(handle(id))
    }

    async fn observe(&self, session_id: Uuid, _: &Handle) -> RuntimeResult<Observed> {
        Ok(self.state().running.get(&session_id).cloned().unwrap_or(Observed::Gone))
    }

    async fn stop(&self, session_id: Uuid, _: &Handle) -> RuntimeResult<()> {
        let mut state = self.state();
        state.running.remove(&session_id);
        state.stopped.push(session_id);
        Ok(())
    }

    async fn list(&self) -> RuntimeResult<Vec<Found>> {
        let state = self.state();
        Ok(state.running.keys().map(|&session_id| Found { session_id, handle: handle(session_id) }).collect())
    }

    async fn logs(&self, session_id: Uuid, _: &Handle, _: usize) -> RuntimeResult<String> {
        Ok(format!("fake output of {session_id}"))
    }

    async fn rotate_secret(&self, session_id: Uuid, _: &Handle, _: super::Kind, secret: &str) -> RuntimeResult<bool> {
        self.state().rotated.push((session_id, secret.to_owned()));
        Ok(true)
    }
}
