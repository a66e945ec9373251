//! Every task that runs beside the requests, started in one place at start-up: the
//! session events listener (`sessions::events`), the notebook proxy's cache keeper and
//! activity writer (`proxy::notebook`), and the reconciler (`reconciler`). `daas serve`
//! starts them all; a test may leave the reconciler out, and drive it by hand or start it
//! later (`reconciler::spawn`).

use tokio::task::JoinHandle;

use crate::proxy::notebook::Notebooks;
use crate::state::AppState;

/// The running tasks, and the state of the features that own some (which the router
/// serves with). Dropping it stops the tasks.
pub struct Background {
    pub notebooks: Notebooks,
    tasks: Vec<JoinHandle<()>>,
}

/// Whether `start` runs the reconciler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconciler {
    Run,
    /// Tests that call `reconciler::reconcile_once` themselves.
    Leave,
}

/// Starts every background task of the process. (`daas serve` adopts what runs with one
/// `reconciler::reconcile_once` before, so that the first requests find it.)
pub fn start(state: &AppState, reconciler: Reconciler) -> Background {
    let notebooks = Notebooks::new(state.clone());
    let mut tasks = vec![state.events.listen()];
    tasks.extend(notebooks.start());
    if reconciler == Reconciler::Run {
        tasks.push(crate::reconciler::spawn(state.clone()));
    }
    Background { notebooks, tasks }
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
