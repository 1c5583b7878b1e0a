//! The express lane: a synchronous `apply` talks to an idle worker itself.
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

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::error::TaskError;
use super::protocol::*;
use super::submit::{Job, Outcome, Shared};
use crate::wire::frame::{FrameReader, FrameWriter, REPLY_SPIN, spilled};
use crate::wire::{FrameError, fds};

/// A worker's socket, both halves.
pub(crate) struct Link {
    pub(crate) reader: FrameReader,
    pub(crate) writer: FrameWriter,
}

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

/// The lane: parked links, returned links and the tally, under one lock.
pub(crate) struct Lanes {
    /// False for pools whose workers retire by themselves (`max_tasks_per_child`,
    /// `max_memory_per_child`): a worker's retirement must reach the driver at once.
    enabled: bool,
    state: Mutex<LaneState>,
    pub(crate) tally: LaneTally,
    /// Express task ids count down from the top, so they never meet the driver's, and a
    /// worker knows them (`EXPRESS_IDS`).
    next_id: AtomicU64,
}

impl Lanes {
    pub(crate) fn new(enabled: bool) -> Lanes {
        Lanes { enabled, state: Mutex::default(), tally: LaneTally::default(), next_id: AtomicU64::new(u64::MAX) }
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

    fn borrow(&self) -> Option<Parked> {
        let mut st = self.lock();
        if st.open { st.idle.pop() } else { None }
    }

    /// Gives a link back: to the idle list while the lane is open and the link is clean,
    /// to the driver otherwise. Returns whether the driver must be woken.
    fn give_back(&self, parked: Parked, failed: Option<(u64, Job, GaveUp)>) -> bool {
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

/// What an express attempt came to.
pub(crate) enum Express<R> {
    /// The lane was closed or empty: nothing was sent; submit through the driver.
    Unavailable,
    /// The task ran: its outcome.
    Done(Result<R, TaskError>),
    /// The task went back to the driver (`make_job` built it); its outcome comes
    /// through the job's sink.
    HandedBack,
}

/// Runs one encoded item on a parked worker, if one is free.
///
/// `item` is one length-prefixed item (as `Encoder::one` makes it), with no descriptors
/// and below the spill size. `make_job` builds the driver's job for the task, and is
/// called only if the task must go back to the driver.
pub(crate) fn run<R: DeserializeOwned>(
    shared: &Shared,
    task: &'static str,
    head: (i64, i64),
    item: &[u8],
    timeout: Option<Duration>,
    make_job: impl FnOnce() -> Job,
) -> Express<R> {
    let lanes = &shared.lanes;
    let Some(mut parked) = lanes.borrow() else { return Express::Unavailable };
    let id = lanes.next_id.fetch_sub(1, Ordering::Relaxed);
    let (trampoline, function) = head;
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let link = &mut parked.link;
    let sent = link
        .writer
        .queue_parts(KIND_TASK, &task_head(id, trampoline, function, 1), item, &[])
        .and_then(|()| link.writer.flush(deadline));
    if sent.is_ok() {
        // The result of a short task is microseconds away: poll before sleeping.
        link.reader.spin_fill(REPLY_SPIN, deadline);
    }
    let failure = match sent {
        Err(FrameError::TimedOut) => GaveUp::TimedOut(timeout.unwrap_or_default()),
        Err(_) => GaveUp::Broken { protocol: false },
        Ok(()) => match link.reader.recv(deadline) {
            Ok(frame) if frame.kind == KIND_RESULT || frame.kind == KIND_RESULT_BIG => {
                let mut frame_fds = frame.fds;
                let decoded = if frame.kind == KIND_RESULT {
                    decode_result::<R>(task, id, frame.payload, frame_fds)
                } else {
                    spilled(frame.payload, &mut frame_fds)
                        .ok()
                        .and_then(|m| decode_result::<R>(task, id, m.bytes(), frame_fds))
                };
                match decoded {
                    Some(outcome) => {
                        parked.done += 1;
                        let tally = &lanes.tally;
                        match &outcome {
                            Ok(_) => &tally.done,
                            Err(TaskError::Panicked { .. }) => &tally.panicked,
                            Err(_) => &tally.codec_failed,
                        }
                        .fetch_add(1, Ordering::Relaxed);
                        if lanes.give_back(parked, None) {
                            shared.wake_always();
                        }
                        return Express::Done(outcome);
                    }
                    None => GaveUp::Broken { protocol: true },
                }
            }
            // Anything else: the driver kills the worker and accounts for the task.
            Ok(_) => GaveUp::Broken { protocol: true },
            Err(FrameError::TimedOut) => GaveUp::TimedOut(timeout.unwrap_or_default()),
            Err(FrameError::Closed) => GaveUp::Broken { protocol: false },
            Err(_) => GaveUp::Broken { protocol: true },
        },
    };
    lanes.give_back(parked, Some((id, make_job(), failure)));
    shared.wake_always();
    Express::HandedBack
}

/// The one outcome of an express result frame (its descriptors go to the value), or
/// `None` if the frame is not the result of task `id`.
fn decode_result<R: DeserializeOwned>(
    task: &'static str,
    id: u64,
    payload: &[u8],
    fds: Vec<OwnedFd>,
) -> Option<Result<R, TaskError>> {
    let (Some(got), Some(1)) = (u64_at(payload, 0), u32_at(payload, 16)) else { return None };
    if got != id {
        return None;
    }
    let item = Items::new(payload.get(RESULT_HEAD..)?, 1).next()?;
    Some(match super::driver::item_outcome(task, item) {
        Outcome::Value(bytes) => fds::with_incoming(fds, || super::guard::decode_value::<R>(task, bytes)),
        Outcome::Failed(e) => Err(e),
    })
}
