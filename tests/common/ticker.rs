//! A ticker for async tests on a current-thread tokio runtime: a task that counts ticks
//! (one per millisecond) and sets an `Event` once it has ticked `release_after` times. A
//! future that blocked the runtime's only thread would stop the ticker, so the event would
//! never be set and whatever waits on it would never end; the count also shows the ticker
//! went on while the future under test was pending.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiproc::Event;

/// The ticks counted so far, shared with the test.
#[derive(Clone, Default)]
pub struct Ticks(Arc<AtomicU64>);

impl Ticks {
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Spawns the ticker on the current runtime; it sets `go` after `release_after` ticks
/// and ticks on until the runtime ends.
pub fn spawn_ticker(go: Event, release_after: u64) -> Ticks {
    let ticks = Ticks::default();
    let t = ticks.clone();
    tokio::spawn(async move {
        loop {
            let n = t.0.fetch_add(1, Ordering::SeqCst) + 1;
            if n == release_after {
                go.set();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    ticks
}

/// A current-thread runtime with timers: one thread, so one blocking call stops it all.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
}
