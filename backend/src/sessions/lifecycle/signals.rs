//! How the lifecycle and the reconciler reach each other inside one process: a wake-up
//! (a launch or a stop was committed: look now, not at the next period), the set of
//! sessions this process is starting (so the reconciler never starts one twice), and the
//! admission of starts (at most so many at once, first come first served).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio::sync::{AcquireError, Notify, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

pub struct Signals {
    wake: Notify,
    launching: Mutex<HashSet<Uuid>>,
    /// One permit per start under way (from the runtime's start until the session answers
    /// or ends): starts share the machine's cores, and too many at once all miss the startup
    /// timeout. tokio's semaphore serves waiters in order.
    starts: Arc<Semaphore>,
    /// The sessions waiting for a permit, in the semaphore's order.
    queue: Mutex<VecDeque<Uuid>>,
}

impl Signals {
    /// `max_starting` starts at once (at least one).
    pub fn new(max_starting: usize) -> Self {
        Self {
            wake: Notify::new(),
            launching: Mutex::default(),
            starts: Arc::new(Semaphore::new(max_starting.max(1))),
            queue: Mutex::default(),
        }
    }

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

    /// Joins the queue for a start: the ticket leaves it when dropped.
    pub fn queue(&self, id: Uuid) -> Ticket<'_> {
        self.queue.lock().expect("the start queue").push_back(id);
        Ticket { signals: self, id, permit: Box::pin(self.starts.clone().acquire_owned()) }
    }
}

/// A place in the start queue.
pub struct Ticket<'a> {
    signals: &'a Signals,
    id: Uuid,
    /// Waiting for a permit holds the place in the semaphore's queue.
    permit: BoxFuture<'static, Result<OwnedSemaphorePermit, AcquireError>>,
}

impl Ticket<'_> {
    /// How many sessions wait before this one.
    pub fn ahead(&self) -> usize {
        let queue = self.signals.queue.lock().expect("the start queue");
        queue.iter().position(|id| *id == self.id).unwrap_or(0)
    }

    /// Resolves to the permit to start when this session's turn comes.
    pub async fn turn(&mut self) -> OwnedSemaphorePermit {
        let permit = (&mut self.permit).await.expect("the start semaphore is never closed");
        self.leave();
        permit
    }

    fn leave(&self) {
        let mut queue = self.signals.queue.lock().expect("the start queue");
        if let Some(at) = queue.iter().position(|id| *id == self.id) {
            queue.remove(at);
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}
