//! What the pool's users hand to its driver: submissions of encoded items, and where
//! their outcomes go.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use serde::Serialize;

use super::driver::item_outcome;
use super::error::{Attempt, TaskError};
use super::protocol::{Items, begin_item, end_item};
use crate::sys::event::Wakeup;
use crate::wire::{codec, fds};

/// How one item ended, as the driver hands it to a [`Sink`].
pub(crate) enum Outcome<'a> {
    /// The encoded value (decoded by the sink, which knows its type).
    Value(&'a [u8]),
    Failed(TaskError),
}

impl Outcome<'_> {
    /// Whether the task panicked (for the statistics).
    pub(crate) fn is_panic(&self) -> bool {
        matches!(self, Outcome::Failed(TaskError::Panicked { .. }))
    }
}

/// Where the outcomes of a submission go: an `AsyncResult`'s slot or a map's collector.
/// Called on the driver thread (callbacks run there, as in Python).
pub(crate) trait Sink: Send + Sync {
    /// Item `index` (counted over the whole map) ended. Returns whether a value decoded.
    fn deliver(&self, index: usize, outcome: Outcome<'_>) -> Delivered;
    /// The outcomes of one result chunk: `count` length-prefixed items of `body`, item
    /// `k` being item `first + k` of the whole map. Returns how many items were well
    /// formed; `tally` counts what each delivery turned out to be. A sink that takes many
    /// items (a map's collector) decodes them in one loop under one lock, with one wake-up.
    fn deliver_chunk(&self, task: &'static str, first: usize, body: &[u8], count: u32, tally: &mut Tally) -> u32 {
        let mut items = Items::new(body, count);
        for (k, item) in (&mut items).enumerate() {
            let outcome = item_outcome(task, item);
            let panicked = outcome.is_panic();
            tally.add(self.deliver(first + k, outcome), panicked);
        }
        items.taken
    }
    /// Whether the caller cancelled: undispatched items are dropped, running ones killed.
    fn cancelled(&self) -> bool;
}

/// What a delivery turned out to be, for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// A value, decoded.
    Value,
    /// An error.
    Failed,
    /// The value did not decode (counted as a codec failure).
    CodecFailed,
    /// A callback panicked (reported; the value stands).
    CallbackPanicked,
    /// Nobody wanted it any more (cancelled before it arrived).
    Ignored,
}

/// What the deliveries of a result chunk turned out to be, for the pool's statistics.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    done: u64,
    callback_panics: u64,
    panicked: u64,
    codec_failed: u64,
}

impl Tally {
    /// One delivery; `panicked` says whether the task panicked.
    pub(crate) fn add(&mut self, d: Delivered, panicked: bool) {
        match d {
            Delivered::Value => self.done += 1,
            Delivered::CallbackPanicked => {
                self.done += 1;
                self.callback_panics += 1;
            }
            Delivered::Ignored => {}
            Delivered::Failed if panicked => self.panicked += 1,
            Delivered::Failed | Delivered::CodecFailed => self.codec_failed += 1,
        }
    }

    /// `n` values delivered.
    #[inline]
    pub(crate) fn values(&mut self, n: u64) {
        self.done += n;
    }

    pub(crate) fn add_to(&self, stats: &mut super::PoolStats) {
        stats.tasks_done += self.done;
        stats.callback_panics += self.callback_panics;
        stats.tasks_panicked += self.panicked;
        stats.tasks_codec_failed += self.codec_failed;
    }
}

/// How a submission is cut into tasks at dispatch time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunking {
    Fixed(u32),
    /// Sized from the measured time per item.
    Adaptive,
}

/// Items encoded once, in the submitting thread, and kept until every one is answered
/// (a dead worker's items are sent again).
pub(crate) struct Submission {
    pub(crate) task: &'static str,
    pub(crate) trampoline: i64,
    pub(crate) function: i64,
    /// Items, each a `u32` length and its postcard bytes.
    pub(crate) bytes: Vec<u8>,
    /// Byte offset of each item, and the end (empty for a single item).
    pub(crate) offsets: Vec<usize>,
    /// Descriptors some arguments carry: (item, its descriptors), by item. A task holds at
    /// most one such item, since each item numbers its descriptors from 0.
    pub(crate) fds: ItemFds,
    /// Index of the first item within the whole map.
    pub(crate) base: usize,
    pub(crate) chunking: Chunking,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: u32,
    pub(crate) sink: Arc<dyn Sink>,
}

impl Submission {
    /// The bytes of items `first..first + count`.
    pub(crate) fn slice(&self, first: u32, count: u32) -> &[u8] {
        if self.offsets.is_empty() {
            &self.bytes
        } else {
            &self.bytes[self.offsets[first as usize]..self.offsets[(first + count) as usize]]
        }
    }
}

/// Descriptors carried by items: (item index, its descriptors).
pub(crate) type ItemFds = Vec<(u32, Vec<OwnedFd>)>;

/// Encodes items into a submission's buffer.
pub(crate) struct Encoder {
    pub(crate) bytes: Vec<u8>,
    pub(crate) offsets: Vec<usize>,
    pub(crate) fds: ItemFds,
}

impl Encoder {
    pub(crate) fn new() -> Encoder {
        Encoder { bytes: Vec::new(), offsets: vec![0], fds: Vec::new() }
    }

    /// With room for `items` items and `bytes` bytes, so a large map grows no buffer.
    pub(crate) fn with_capacity(items: usize, bytes: usize) -> Encoder {
        let mut offsets = Vec::with_capacity(items + 1);
        offsets.push(0);
        Encoder { bytes: Vec::with_capacity(bytes), offsets, fds: Vec::new() }
    }

    /// An empty encoder sized like this one (for the next part of the same input).
    pub(crate) fn like(&self) -> Encoder {
        Encoder::with_capacity(self.len(), self.bytes.len())
    }

    /// Appends one item, with the descriptors it carries. Inlined into the map's loop:
    /// the length prefix, the value and the offset cost a few stores each.
    #[inline]
    pub(crate) fn push<A: Serialize>(&mut self, arg: &A) -> Result<(), String> {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        let scope = fds::Outgoing::open();
        if let Err(e) = codec::encode_into(arg, &mut self.bytes) {
            self.bytes.truncate(at);
            return Err(e.to_string());
        }
        if scope.attached() {
            let item = self.len() as u32;
            self.fds.push((item, scope.take()));
        }
        drop(scope);
        let len = (self.bytes.len() - at - 4) as u32;
        self.bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.offsets.push(self.bytes.len());
        Ok(())
    }

    /// One item on its own (as `apply` sends it): no offsets, one allocation.
    pub(crate) fn one<A: Serialize>(arg: &A) -> Result<(Vec<u8>, ItemFds), String> {
        let mut bytes = Vec::with_capacity(64);
        let at = begin_item(&mut bytes);
        let (r, new_fds) = fds::collect_outgoing(|| codec::encode_into(arg, &mut bytes));
        r.map_err(|e| e.to_string())?;
        end_item(&mut bytes, at);
        let fds = if new_fds.is_empty() { Vec::new() } else { vec![(0, new_fds)] };
        Ok((bytes, fds))
    }

    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The finished buffers; a single item needs no offsets.
    pub(crate) fn finish(mut self) -> (Vec<u8>, Vec<usize>, ItemFds) {
        if self.offsets.len() == 2 {
            self.offsets = Vec::new();
        }
        (self.bytes, self.offsets, self.fds)
    }
}

/// A run of items of one submission waiting for a worker.
pub(crate) struct Job {
    pub(crate) sub: Arc<Submission>,
    pub(crate) first: u32,
    pub(crate) count: u32,
    /// Earlier runs whose worker died (for `retries`).
    pub(crate) attempts: Vec<Attempt>,
    /// One of several items a death could not tell apart (their results were lost with
    /// their worker): it runs alone on a worker, so a second death names it for sure.
    pub(crate) isolate: bool,
}

impl Job {
    /// Items `first..first + count` of `sub`, never run before.
    pub(crate) fn new(sub: Arc<Submission>, first: u32, count: u32) -> Job {
        Job { sub, first, count, attempts: Vec::new(), isolate: false }
    }

    /// Items `first..first + count` of the same submission, as a fresh job.
    pub(crate) fn piece(&self, first: u32, count: u32) -> Job {
        Job::new(self.sub.clone(), first, count)
    }
}

/// Requests from users to the driver, under one lock.
#[derive(Default)]
pub(crate) struct Inbox {
    pub(crate) jobs: VecDeque<Job>,
    pub(crate) closed: bool,
    pub(crate) terminate: bool,
    /// Some sink was cancelled: the driver looks for its items.
    pub(crate) cancel: bool,
    /// The driver has ended: nothing will run any more.
    pub(crate) finished: bool,
}

/// The statistics the driver publishes, and requests for a fresh copy: `Pool::stats`
/// asks, and the driver answers at the end of its current round, so a snapshot taken
/// after seeing a result includes that result.
pub(crate) struct StatsBoard {
    /// The last snapshot, and the request number it answers.
    pub(crate) published: Mutex<(super::PoolStats, u64)>,
    pub(crate) cond: Condvar,
    pub(crate) wanted: AtomicU64,
    /// The driver has ended: the last snapshot is final.
    pub(crate) done: AtomicBool,
    pub(crate) driver: OnceLock<ThreadId>,
}

impl StatsBoard {
    pub(crate) fn new(initial: super::PoolStats) -> StatsBoard {
        StatsBoard {
            published: Mutex::new((initial, 0)),
            cond: Condvar::new(),
            wanted: AtomicU64::new(0),
            done: AtomicBool::new(false),
            driver: OnceLock::new(),
        }
    }

    /// The driver's side: publishes when something changed or a copy was asked for.
    pub(crate) fn publish(&self, stats: &super::PoolStats, changed: bool) {
        let wanted = self.wanted.load(Ordering::SeqCst);
        let mut p = self.published.lock().unwrap_or_else(|e| e.into_inner());
        if !changed && p.1 >= wanted {
            return;
        }
        p.0.clone_from(stats);
        p.1 = wanted;
        self.cond.notify_all();
    }

    pub(crate) fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        let _p = self.published.lock().unwrap_or_else(|e| e.into_inner());
        self.cond.notify_all();
    }
}

/// What users and the driver share.
pub(crate) struct Shared {
    pub(crate) inbox: Mutex<Inbox>,
    pub(crate) wakeup: Wakeup,
    /// The driver is (about to be) blocked in poll and needs a wake-up.
    pub(crate) asleep: AtomicBool,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) default_retries: u32,
    pub(crate) stats: StatsBoard,
    /// Workers being started by helper threads, and those started, for the driver to adopt.
    pub(crate) starts: super::starts::Starts,
    /// Where the work goes instead of this pool's own workers (a cluster), if anywhere.
    pub(crate) backend: Option<Arc<dyn super::backend::Dispatch>>,
    /// Idle workers' sockets, for `apply` to use without the driver.
    pub(crate) lanes: super::lane::Lanes,
}

impl Shared {
    /// Queues jobs; gives them back if the pool accepts no more. `more` is for a running
    /// `imap`, which may go on feeding a closed pool until it has drained.
    pub(crate) fn submit(&self, jobs: impl IntoIterator<Item = Job>, more: bool) -> Result<(), Vec<Job>> {
        if let Some(backend) = &self.backend {
            {
                let inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
                if inbox.terminate || (inbox.closed && !more) {
                    return Err(jobs.into_iter().collect());
                }
            }
            for job in jobs {
                backend.dispatch(super::backend::Batch::new(job));
            }
            return Ok(());
        }
        {
            let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
            if inbox.finished || inbox.terminate || (inbox.closed && !more) {
                return Err(jobs.into_iter().collect());
            }
            inbox.jobs.extend(jobs);
        }
        self.wake();
        Ok(())
    }

    /// Wakes the driver even if it did not say it sleeps (from threads it does not wait for).
    pub(crate) fn wake_always(&self) {
        self.asleep.store(false, Ordering::SeqCst);
        self.wakeup.wake();
    }

    pub(crate) fn wake(&self) {
        if self.asleep.swap(false, Ordering::SeqCst) {
            self.wakeup.wake();
        }
    }

    pub(crate) fn request_cancel(&self) {
        if let Some(backend) = &self.backend {
            return backend.cancel();
        }
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).cancel = true;
        self.wake();
    }
}
