//! How the lifecycle and the reconciler reach each other inside one process: a wake-up
//! (a launch or a stop was committed: look now, not at the next period) and the set of
//! sessions this process is starting (so the reconciler never starts one twice).

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::Notify;
use uuid::Uuid;

#[derive(Default)]
pub struct Signals {
    wake: Notify,
    launching: Mutex<HashSet<Uuid>>,
}

impl Signals {
    /// Asks the reconciler for a pass now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when someone asks for a pass.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Marks `id` as being started by this process; false when it already is.
    pub fn claim(&self, id: Uuid) -> bool {
        self.launching.lock().expect("the launching set").insert(id)
    }

    /// `id` is no longer being started by this process.
    pub fn release(&self, id: Uuid) {
        self.launching.lock().expect("the launching set").remove(&id);
    }

    /// The sessions this process is starting now.
    pub fn launching(&self) -> HashSet<Uuid> {
        self.launching.lock().expect("the launching set").clone()
    }
}
