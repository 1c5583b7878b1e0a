//! What a worker has done so far, shared between its loop and its handle.

use std::sync::{Condvar, Mutex};

pub use crate::status::WorkerStats;

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
