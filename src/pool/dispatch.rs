//! The pool's seam to other machines, used by the `multiproc-nats` crate through the
//! hidden `multiproc::remote` module:
//!
//! - a `Pool` whose submissions go to a [`Dispatch`] (a cluster) instead of its own
//!   worker processes. Everything in front of the dispatch — `apply`, the map family,
//!   chunk sizes, encoding, windows, callbacks, `AsyncResult`, `MapResult`, `IMapIter`,
//!   `TaskError` — is the local pool's own code, so a cluster pool cannot drift from it;
//! - `run_on_pool` (in `backend`): the worker side, which runs a task that came from elsewhere (its code
//!   as offsets, its items as bytes) on a local pool, with the pool's fault tolerance.
//!
//! A batch is exactly what a local worker receives: the function and trampoline offsets
//! (the trampoline is the pool's own, monomorphised for the task's types) and a list of
//! length-prefixed encoded items.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use super::chunk::Chunking;
use super::error::TaskError;
use super::item::{Delivered, Outcome};
use super::stats::PoolStats;
use super::submit::{Job, Submission};

/// Where a pool built by `pool_with` sends its work: a backend that runs batches of
/// items elsewhere and completes every item exactly once.
///
/// Calls come from the submitting threads; completions may come from any thread.
pub trait Dispatch: Send + Sync + 'static {
    /// Runs `batch`'s items; each must end with exactly one [`Batch::complete`] (a
    /// second one for the same item is ignored).
    fn dispatch(&self, batch: Batch);
    /// A handle was cancelled: items of batches whose [`Batch::cancelled`] is now true
    /// may be dropped (completed with [`TaskError::Cancelled`]).
    fn cancel(&self);
    /// The pool was closed and joined: wait until every dispatched item has completed.
    fn join(&self);
    /// The pool is terminated: complete every unfinished item with
    /// [`TaskError::Terminated`] and stop.
    fn terminate(&self);
    /// The pool's counters, for `Pool::stats`.
    fn stats(&self) -> PoolStats;
    /// The backend itself, so that its crate can find its own type behind a `Pool`.
    fn as_any(&self) -> &dyn Any;
    /// Whether this thread is the one that completes this backend's items (a callback is
    /// running on it): the pool then answers a wait for one of its results at once with
    /// [`TaskError::WaitInCallback`] rather than block the thread that would deliver it.
    /// The default, `false`, suits a backend that completes items on threads no callback
    /// can block for good.
    fn delivers_on_this_thread(&self) -> bool {
        false
    }
}

/// Items of one submission, as the pool would hand them to one of its workers.
pub struct Batch {
    sub: Arc<Submission>,
    first: u32,
    count: u32,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("task", &self.sub.task)
            .field("first", &self.first)
            .field("len", &self.count)
            .finish()
    }
}

impl Batch {
    pub(crate) fn new(job: Job) -> Batch {
        Batch { sub: job.sub, first: job.first, count: job.count }
    }

    /// The task's function name.
    pub fn function_name(&self) -> &'static str {
        self.sub.task
    }

    /// Offset of the task's function.
    pub fn function(&self) -> i64 {
        self.sub.function
    }

    /// Offset of the pool trampoline made for the function's types.
    pub fn trampoline(&self) -> i64 {
        self.sub.trampoline
    }

    /// How many items.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether it has no items.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Items per task as the caller asked (`None`: adaptive, the backend chooses).
    pub fn chunk(&self) -> Option<u32> {
        match self.sub.chunking {
            Chunking::Fixed(k) | Chunking::Even(k) => Some(k.max(1)),
            Chunking::Adaptive => None,
        }
    }

    /// Whether the caller left the cut to the pool (`map`'s default chunksize, or an
    /// adaptive one) rather than chose it: a backend may then cut finer, when no time
    /// limit bounds a chunk.
    pub fn chunk_is_free(&self) -> bool {
        matches!(self.sub.chunking, Chunking::Even(_) | Chunking::Adaptive)
    }

    /// Each task's time limit (a chunk counts as one task).
    pub fn timeout(&self) -> Option<Duration> {
        self.sub.timeout
    }

    /// How many times an item whose worker died is run again.
    pub fn retries(&self) -> u32 {
        self.sub.retries
    }

    /// The items: each a `u32` little-endian length and its encoded argument.
    pub fn items(&self) -> &[u8] {
        self.sub.slice(self.first, self.count)
    }

    /// The encoded size of items `k..k + n` (with their length prefixes).
    pub fn size_of(&self, k: u32, n: u32) -> usize {
        self.sub.slice(self.first + k, n).len()
    }

    /// Whether some item carries a file descriptor (which cannot leave this machine).
    pub fn carries_descriptors(&self) -> bool {
        let range = self.first..self.first + self.count;
        self.sub.fds().iter().any(|(i, _)| range.contains(i))
    }

    /// Splits off items `at..`: `self` keeps the first `at`.
    pub fn split_off(&mut self, at: u32) -> Batch {
        let at = at.min(self.count);
        let rest = Batch { sub: self.sub.clone(), first: self.first + at, count: self.count - at };
        self.count = at;
        rest
    }

    /// Whether the caller cancelled (the handle of these items).
    pub fn cancelled(&self) -> bool {
        self.sub.sink.cancelled()
    }

    /// Item `k` ended: with its encoded value or an error. Runs the caller's callbacks.
    pub fn complete(&self, k: u32, outcome: Result<&[u8], TaskError>) -> Delivered {
        let index = self.sub.base + (self.first + k) as usize;
        let outcome = match outcome {
            Ok(bytes) => Outcome::Value(bytes),
            Err(e) => Outcome::Failed(e),
        };
        self.sub.sink.deliver(index, outcome)
    }
}
