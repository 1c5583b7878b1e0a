//! What a worker has done so far, shared between its loop and its handle.

use std::sync::{Condvar, Mutex};

/// What a worker has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Tasks received from the queue.
    pub received: u64,
    /// Of those, tasks that had been handed to some worker before.
    pub redelivered: u64,
    /// Tasks whose result the client confirmed, then acked.
    pub completed: u64,
    /// Tasks refused without running (another build, another protocol, unreadable).
    pub refused: u64,
    /// Tasks whose result could not be handed to their client in time, then dropped.
    pub abandoned: u64,
    /// In-progress acks sent for running tasks.
    pub progress_acks: u64,
    /// Tasks dropped unrun because their client's lease had lapsed (the client is gone).
    pub orphaned: u64,
}

/// The stats, and a signal to whoever waits for them to change.
#[derive(Debug, Default)]
pub(super) struct StatsCell {
    pub(super) stats: Mutex<WorkerStats>,
    pub(super) changed: Condvar,
}

impl StatsCell {
    pub(super) fn update(&self, f: impl FnOnce(&mut WorkerStats)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, WorkerStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}
