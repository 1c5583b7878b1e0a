//! The express lane's state: a synchronous `apply` talks to an idle worker itself
//! (`express` runs a task over it).
//!
//! Through the driver, an `apply` costs two thread hops each way (caller → driver →
//! worker → driver → caller), which on one CPU is twice the context switches of a plain
//! socket round trip. So when the driver has nothing to do it *parks* its idle workers'
//! sockets here, and a caller of `apply` borrows one: it writes the task, reads the
//! result and puts the socket back, while the driver sleeps. The driver still watches
//! the worker's pidfd, and keeps its process.
//!
//! Invariants:
//! - A worker's [`Link`] is in exactly one place: its driver `Worker`, the `idle` list,
//!   or the hands of one caller. The driver never removes a worker whose link is out, so
//!   a caller can always give the link back.
//! - The lane is open only while the driver has nothing pending and the pool is neither
//!   closed nor terminating. The driver closes it (and takes the idle links back) before
//!   it dispatches anything; a borrowed link then comes back through `back`, with a
//!   wake-up.
//! - Anything but a clean result (a dead worker, a cut or strange frame, a timeout)
//!   goes back to the driver with the task, as if the driver had sent it: the driver
//!   reaps, blames with the shared counters, retries or reports, exactly as for its
//!   own tasks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::pool::error::TaskError;
use crate::pool::submit::Job;
use crate::wire::frame::Channel;

/// A worker's socket, both halves.
pub(crate) type Link = Channel;

/// An idle worker's socket, lent out by the driver.
pub(crate) struct Parked {
    /// Which driver `Worker` it belongs to.
    pub(crate) serial: u64,
    pub(crate) link: Link,
    /// Items the worker ran for callers while parked: the driver adds them to its count
    /// of answered items, which the shared counters are read against.
    pub(crate) done: u64,
}

/// Why a caller gave a task back to the driver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum GaveUp {
    /// No result before the task's timeout: the driver kills the worker.
    TimedOut(Duration),
    /// The worker ended, or sent something that is not the result.
    Broken { protocol: bool },
}

/// A link coming back to the driver (when the lane has closed, or with a failed task).
pub(crate) struct Returned {
    pub(crate) parked: Parked,
    /// The task it was running, its id and why it came back, if it did not finish.
    pub(crate) failed: Option<(u64, Job, GaveUp)>,
}

#[derive(Default)]
struct LaneState {
    open: bool,
    idle: Vec<Parked>,
    back: Vec<Returned>,
}

/// The outcomes of express tasks, for the driver's statistics.
#[derive(Default)]
pub(crate) struct LaneTally {
    pub(crate) done: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) codec_failed: AtomicU64,
}

impl LaneTally {
    /// One express task's outcome.
    pub(crate) fn count<R>(&self, outcome: &Result<R, TaskError>) {
        match outcome {
            Ok(_) => &self.done,
            Err(TaskError::Panicked { .. }) => &self.panicked,
            Err(_) => &self.codec_failed,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// The lane: parked links, returned links and the tally, under one lock.
pub(crate) struct Lanes {
    /// False for pools whose workers retire by themselves (`max_tasks_per_child`,
    /// `max_memory_per_child`): a worker's retirement must reach the driver at once.
    enabled: bool,
    state: Mutex<LaneState>,
    pub(crate) tally: LaneTally,
    /// Express task ids count down from the top, so they never meet the driver's, and a
    /// worker knows them (`EXPRESS_IDS`).
    pub(crate) next_id: AtomicU64,
    /// The pool's soft timeout, which an express task's head carries too.
    pub(crate) soft_timeout: Option<std::time::Duration>,
}

impl Lanes {
    pub(crate) fn new(enabled: bool, soft_timeout: Option<std::time::Duration>) -> Lanes {
        Lanes {
            enabled,
            state: Mutex::default(),
            tally: LaneTally::default(),
            next_id: AtomicU64::new(u64::MAX),
            soft_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The driver's side: opens the lane with these idle links.
    pub(crate) fn park(&self, links: impl IntoIterator<Item = Parked>) {
        let mut st = self.lock();
        st.idle.extend(links);
        st.open = true;
    }

    /// Closes the lane and returns the links parked in it (borrowed ones come back
    /// through [`take_returned`](Self::take_returned)).
    pub(crate) fn shut(&self) -> Vec<Parked> {
        let mut st = self.lock();
        st.open = false;
        std::mem::take(&mut st.idle)
    }

    /// Closes the lane to callers, leaving the parked links for the driver to take back
    /// (what `close` and `terminate` do, so no `apply` starts after them).
    pub(crate) fn refuse(&self) {
        self.lock().open = false;
    }

    /// Takes back the one parked link of worker `serial`, if it is parked (not lent).
    pub(crate) fn unpark(&self, serial: u64) -> Option<Parked> {
        let mut st = self.lock();
        let at = st.idle.iter().position(|p| p.serial == serial)?;
        Some(st.idle.swap_remove(at))
    }

    /// Links that came back to the driver.
    pub(crate) fn take_returned(&self) -> Vec<Returned> {
        let mut st = self.lock();
        if st.back.is_empty() { Vec::new() } else { std::mem::take(&mut st.back) }
    }

    pub(crate) fn borrow(&self) -> Option<Parked> {
        let mut st = self.lock();
        if st.open { st.idle.pop() } else { None }
    }

    /// Gives a link back: to the idle list while the lane is open and the link is clean,
    /// to the driver otherwise. Returns whether the driver must be woken.
    pub(crate) fn give_back(&self, parked: Parked, failed: Option<(u64, Job, GaveUp)>) -> bool {
        let mut st = self.lock();
        let clean = failed.is_none() && parked.link.reader.buffered() == 0;
        if st.open && clean {
            st.idle.push(parked);
            false
        } else {
            st.back.push(Returned { parked, failed });
            true
        }
    }
}
