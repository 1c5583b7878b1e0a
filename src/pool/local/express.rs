//! An express task: the calling thread runs one small item on a parked worker (see
//! `lane` for why and for the invariants).

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::lane::{GaveUp, Link};
use super::protocol::*;
use super::state::State;
use crate::pool::error::TaskError;
use crate::pool::item::{Items, Outcome, item_outcome};
use crate::pool::submit::Job;
use crate::wire::frame::{REPLY_SPIN, spilled};
use crate::wire::{FrameError, fds};

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
/// `item` is one length-prefixed item (as `Encoder::one` makes it), with no descriptors;
/// one from the spill size on goes through the driver. `make_job` builds the driver's
/// job for the task, and is called only if the task must go back to the driver.
pub(crate) fn run<R: DeserializeOwned>(
    state: &State,
    task: &'static str,
    code: (i64, i64),
    item: &[u8],
    timeout: Option<Duration>,
    make_job: impl FnOnce() -> Job,
) -> Express<R> {
    let lanes = &state.lanes;
    if !lanes.enabled() || item.len() >= SPILL_AT {
        return Express::Unavailable;
    }
    let Some(mut parked) = lanes.borrow() else { return Express::Unavailable };
    let (trampoline, function) = code;
    let id = lanes.next_id.fetch_sub(1, Ordering::Relaxed);
    let limits = TimeLimits { soft: lanes.soft_timeout, hard: timeout };
    let head = TaskHead { id, trampoline, function, count: 1, limits };
    match round_trip::<R>(&mut parked.link, task, &head, item, timeout) {
        Ok(outcome) => {
            parked.done += 1;
            lanes.tally.count(&outcome);
            if lanes.give_back(parked, None) {
                state.wake_always();
            }
            Express::Done(outcome)
        }
        Err(failure) => {
            lanes.give_back(parked, Some((head.id, make_job(), failure)));
            state.wake_always();
            Express::HandedBack
        }
    }
}

/// Sends the task and reads its result; anything but the result is why the task goes
/// back to the driver (which kills the worker and accounts for the task).
fn round_trip<R: DeserializeOwned>(
    link: &mut Link,
    task: &'static str,
    head: &TaskHead,
    item: &[u8],
    timeout: Option<Duration>,
) -> Result<Result<R, TaskError>, GaveUp> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let sent = link.writer.queue_parts(KIND_TASK, &head.encode(), item, &[]).and_then(|()| link.writer.flush(deadline));
    match sent {
        Ok(()) => {}
        Err(FrameError::TimedOut) => return Err(GaveUp::TimedOut(timeout.unwrap_or_default())),
        Err(_) => return Err(GaveUp::Broken { protocol: false }),
    }
    // The result of a short task is microseconds away: poll before sleeping.
    link.reader.spin_fill(REPLY_SPIN, deadline);
    let frame = match link.reader.recv(deadline) {
        Ok(frame) => frame,
        Err(FrameError::TimedOut) => return Err(GaveUp::TimedOut(timeout.unwrap_or_default())),
        Err(FrameError::Closed) => return Err(GaveUp::Broken { protocol: false }),
        Err(_) => return Err(GaveUp::Broken { protocol: true }),
    };
    let mut frame_fds = frame.fds;
    let decoded = match frame.kind {
        KIND_RESULT => decode_result::<R>(task, head.id, frame.payload, frame_fds),
        KIND_RESULT_BIG => spilled(frame.payload, &mut frame_fds)
            .ok()
            .and_then(|m| decode_result::<R>(task, head.id, m.bytes(), frame_fds)),
        _ => None,
    };
    decoded.ok_or(GaveUp::Broken { protocol: true })
}

/// The one outcome of an express result frame (its descriptors go to the value), or
/// `None` if the frame is not the result of task `id`.
fn decode_result<R: DeserializeOwned>(
    task: &'static str,
    id: u64,
    payload: &[u8],
    fds: Vec<OwnedFd>,
) -> Option<Result<R, TaskError>> {
    let (head, body) = ResultHead::decode(payload)?;
    if head.id != id || head.count != 1 {
        return None;
    }
    let item = Items::new(body, 1).next()?;
    Some(match item_outcome(task, item) {
        Outcome::Value(bytes) => fds::with_incoming(fds, || crate::pool::guard::decode_value::<R>(task, bytes)),
        Outcome::Failed(e) => Err(e),
    })
}
