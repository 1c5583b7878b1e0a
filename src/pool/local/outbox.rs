//! A worker's results on their way out, while its next task runs.
//!
//! A worker batches the results of tiny tasks: sending each alone would cost a system
//! call and a wake-up of the driver per task. But a batch must never wait for the task
//! that runs after it: that task may run for minutes, or for ever, and the results held
//! would reach their callers only then; or, if its worker is killed (a time limit),
//! never, and their tasks would run again elsewhere.
//!
//! So before a task starts, the results queued so far are *handed over* to the outbox,
//! a second writer on the same socket that a small thread of the worker, the flusher,
//! sends once they have waited [`FLUSH_AFTER`]: a tiny task that follows takes them
//! back when it flushes first (the common case, at no cost but one uncontended lock), a
//! long one leaves them to the flusher.
//!
//! The flusher is never woken for a hand-over while the worker is busy: waking a thread
//! costs a system call and a CPU's attention per batch. It looks every [`POLL`] instead,
//! and only after [`QUIET_POLLS`] looks with nothing held does it sleep until the next
//! hand-over wakes it (an idle worker costs nothing). So a result waits at most about
//! `POLL + FLUSH_AFTER` behind a long task.
//!
//! The flusher starts with the first hand-over: a worker that never holds a batch (one
//! that runs a single task, or only tasks that each arrive once the last was sent) never
//! starts a thread.
//!
//! The invariant: frames leave in the order they were queued. Every send of the worker
//! goes through [`Outbox::flush_all`] or the flusher, both under the outbox's lock, and
//! both send the outbox (older frames) before the worker's own writer.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::wire::FrameError;
use crate::wire::frame::FrameWriter;

/// Results wait at most about this long in the worker before being sent.
pub(super) const FLUSH_AFTER: Duration = Duration::from_micros(200);

/// How often a busy worker's flusher looks for results held too long.
const POLL: Duration = Duration::from_millis(1);

/// Looks in a row with nothing held after which the flusher sleeps until woken.
const QUIET_POLLS: u32 = 50;

/// After a failed send, the flusher tries again this late (the worker's own next send
/// most likely meets the failure first and ends the worker).
const RETRY_AFTER: Duration = Duration::from_millis(10);

/// The flusher's stack: it only waits and sends.
const FLUSHER_STACK: usize = 64 * 1024;

/// Results handed over before a task, and the flusher that sends them if it runs long.
pub(super) struct Outbox {
    state: Mutex<Held>,
    /// Results were handed over to an outbox that was empty.
    handed: Condvar,
    /// Whether the flusher runs, once the first batch is handed over: a worker that
    /// never has one to hand over (one that runs a single task, as when each task ends
    /// its worker) never starts a thread. A thread may be refused (a user's sandbox
    /// rule, an address-space limit): without it, a hand-over sends at once.
    flusher: OnceLock<bool>,
}

struct Held {
    /// The handed-over frames, on the worker's socket.
    writer: FrameWriter,
    /// When the oldest of them was handed over (`None`: nothing held).
    since: Option<Instant>,
    /// The flusher waits for a hand-over (rather than for a batch's time).
    flusher_idle: bool,
}

impl Outbox {
    /// An outbox on `writer`'s socket (its flusher starts with the first hand-over).
    pub(super) fn new(writer: &FrameWriter) -> Arc<Outbox> {
        let held = Held { writer: writer.sibling(), since: None, flusher_idle: false };
        Arc::new(Outbox { state: Mutex::new(held), handed: Condvar::new(), flusher: OnceLock::new() })
    }

    /// Whether the flusher runs; starts it the first time.
    fn flusher_runs(self: &Arc<Self>) -> bool {
        *self.flusher.get_or_init(|| {
            let outbox = self.clone();
            let builder = std::thread::Builder::new().name("multiproc-flush".into()).stack_size(FLUSHER_STACK);
            builder.spawn(move || outbox.run_flusher()).is_ok()
        })
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Before a task: what `writer` has queued goes to the outbox, which the flusher
    /// sends if the task is still running [`FLUSH_AFTER`] from now.
    pub(super) fn hand_over(self: &Arc<Self>, writer: &mut FrameWriter) -> Result<(), FrameError> {
        if writer.pending() == 0 {
            return Ok(());
        }
        if !self.flusher_runs() {
            return writer.flush(None);
        }
        let mut held = self.lock();
        writer.move_pending_into(&mut held.writer);
        if held.since.is_none() {
            held.since = Some(Instant::now());
            if held.flusher_idle {
                self.handed.notify_one();
            }
        }
        Ok(())
    }

    /// Sends everything: the handed-over frames, then `writer`'s, in one go.
    pub(super) fn flush_all(&self, writer: &mut FrameWriter) -> Result<(), FrameError> {
        let mut held = self.lock();
        if held.since.take().is_some() {
            // One send for both (the latest result is small: a copy is cheaper than a
            // second system call and a second wake-up of the driver).
            writer.move_pending_into(&mut held.writer);
            return held.writer.flush(None);
        }
        writer.flush(None)
    }

    /// The flusher: sends what was handed over once it has waited [`FLUSH_AFTER`].
    fn run_flusher(&self) {
        let mut held = self.lock();
        let mut quiet = 0;
        loop {
            match flusher_step(held.since, Instant::now()) {
                FlusherStep::Idle if quiet < QUIET_POLLS => {
                    quiet += 1;
                    held = self.handed.wait_timeout(held, POLL).unwrap_or_else(|e| e.into_inner()).0;
                    continue;
                }
                FlusherStep::Idle => {
                    held.flusher_idle = true;
                    held = self.handed.wait(held).unwrap_or_else(|e| e.into_inner());
                    held.flusher_idle = false;
                }
                FlusherStep::Wait(d) => held = self.handed.wait_timeout(held, d).unwrap_or_else(|e| e.into_inner()).0,
                FlusherStep::Send => {
                    held.since = None;
                    // A failure is the worker's too: its own next send or read meets it
                    // and ends it. What is still queued waits for that send, or a retry.
                    if held.writer.flush(None).is_err() && held.writer.pending() > 0 {
                        held.since = Some(Instant::now());
                        held = self.handed.wait_timeout(held, RETRY_AFTER).unwrap_or_else(|e| e.into_inner()).0;
                    }
                }
            }
            quiet = 0;
        }
    }
}

/// What the flusher does next.
#[derive(Debug, PartialEq, Eq)]
enum FlusherStep {
    /// Nothing is held: wait for a hand-over.
    Idle,
    /// Something is held, not yet for [`FLUSH_AFTER`]: wait this long.
    Wait(Duration),
    /// It has waited long enough: send it.
    Send,
}

/// The flusher's next step, from when the held frames were handed over.
fn flusher_step(since: Option<Instant>, now: Instant) -> FlusherStep {
    match since {
        None => FlusherStep::Idle,
        Some(t) => match (t + FLUSH_AFTER).checked_duration_since(now) {
            Some(d) if !d.is_zero() => FlusherStep::Wait(d),
            _ => FlusherStep::Send,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::Channel;

    #[test]
    fn the_flusher_sends_only_what_waited_long_enough() {
        let t = Instant::now();
        assert_eq!(flusher_step(None, t), FlusherStep::Idle);
        assert_eq!(flusher_step(Some(t), t), FlusherStep::Wait(FLUSH_AFTER));
        assert_eq!(flusher_step(Some(t), t + FLUSH_AFTER / 2), FlusherStep::Wait(FLUSH_AFTER / 2));
        assert_eq!(flusher_step(Some(t), t + FLUSH_AFTER), FlusherStep::Send);
        assert_eq!(flusher_step(Some(t), t + 2 * FLUSH_AFTER), FlusherStep::Send);
    }

    #[test]
    fn handed_over_frames_go_by_themselves_and_before_later_ones() {
        let (mut near, mut far) = Channel::pair(1 << 20).unwrap();
        let outbox = Outbox::new(&near.writer);
        near.writer.queue(7, &1u32).unwrap();
        outbox.hand_over(&mut near.writer).unwrap();
        // Nobody flushes: the flusher sends it, while "the next task" runs.
        let first = far.recv(Some(Instant::now() + Duration::from_secs(60))).unwrap();
        assert_eq!((first.kind, first.decode::<u32>().unwrap()), (7, 1));
        near.writer.queue(7, &2u32).unwrap();
        outbox.hand_over(&mut near.writer).unwrap();
        near.writer.queue(7, &3u32).unwrap();
        outbox.flush_all(&mut near.writer).unwrap();
        for want in [2u32, 3] {
            let f = far.recv(Some(Instant::now() + Duration::from_secs(60))).unwrap();
            assert_eq!(f.decode::<u32>().unwrap(), want, "in the order they were queued");
        }
    }
}
