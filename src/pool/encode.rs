//! A whole map's items, encoded in the calling thread and submitted: in parts sent
//! while the rest is still being encoded when the length is known, otherwise all at
//! the end (Python's `map` makes a list too).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::chunk::{self, Chunking};
use super::engine::Shared;
use super::error::TaskError;
use super::item::Outcome;
use super::options::Chunksize;
use super::submit::{Encoder, Job, Sink, Submission};

/// A map whose length is known sends its encoded items in pieces of at least this size
/// (and whole chunks) while it goes on encoding, so workers start on the first chunks
/// while the parent encodes the rest.
const SEND_EARLY_BYTES: usize = 32 << 10;
/// With the default chunksize, a task carries about this much at most: a few large
/// items per task, sent as soon as they are encoded, keep both sides busy where Python's
/// 25-item chunks of large buffers would leave the workers waiting for the parent.
const DEFAULT_TASK_BYTES: usize = 2 << 20;
/// At most this much is reserved up front from the first item's size.
const MAX_RESERVE: usize = 64 << 20;
/// At most this many item offsets are reserved from a size hint (it is only a hint).
const MAX_RESERVED_ITEMS: usize = 1 << 20;

/// How one map's items are encoded and where they go: `S` is the map's collector, by
/// its own type, so the driver reaches it through one dynamic call, not two.
pub(crate) struct MapEncoding<'a, S> {
    pub(crate) shared: &'a Shared,
    pub(crate) task: &'static str,
    pub(crate) trampoline: i64,
    pub(crate) function: i64,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: u32,
    pub(crate) sink: Arc<S>,
    pub(crate) chunksize: Option<Chunksize>,
    pub(crate) workers: usize,
}

/// The items encoded so far: the part being filled and the parts held back.
struct Parts {
    enc: Encoder,
    /// Index of the first item of `enc`.
    base: usize,
    /// Items pulled so far.
    n: usize,
    held: Vec<(usize, Encoder)>,
}

/// The input's length, if its size hint is exact.
pub(crate) fn exact_len(items: &impl Iterator) -> Option<usize> {
    match items.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo),
        _ => None,
    }
}

impl<S: Sink + 'static> MapEncoding<'_, S> {
    /// Encodes and submits every item (`known`: their number, if known up front);
    /// returns how many there were. An item that does not encode fails on its own.
    pub(crate) fn run<A: Serialize>(&self, items: impl Iterator<Item = A>, known: Option<usize>) -> usize {
        let early = known.map(|n| self.chunking(n));
        let mut parts = Parts {
            enc: Encoder::with_capacity(known.unwrap_or(0).min(MAX_RESERVED_ITEMS), 0),
            base: 0,
            n: 0,
            held: Vec::new(),
        };
        for a in items {
            self.push(&mut parts, &a, early);
            if parts.n == 1
                && let Some(total) = known
            {
                reserve_like_first(&mut parts.enc, total, early);
            }
        }
        let n = parts.n;
        parts.held.push((parts.base, parts.enc));
        let chunking = early.filter(|_| known == Some(n)).unwrap_or_else(|| self.chunking(n));
        for (base, enc) in parts.held {
            self.send(base, enc, chunking);
        }
        n
    }

    fn chunking(&self, n: usize) -> Chunking {
        chunk::map_chunking(self.chunksize, n, self.workers)
    }

    /// Encodes one item; sends the part early once it is large enough (`early`: the
    /// chunking, when the length is known).
    #[inline]
    fn push<A: Serialize>(&self, parts: &mut Parts, a: &A, early: Option<Chunking>) {
        if let Err(message) = parts.enc.push(a) {
            // The items before it go on their own, so indices stay in step.
            parts.held.push((parts.base, std::mem::replace(&mut parts.enc, Encoder::new())));
            let _ = self.sink.deliver(parts.n, Outcome::Failed(TaskError::Codec { task: self.task, message }));
            parts.base = parts.n + 1;
        } else if let Some(chunking @ (Chunking::Fixed(k) | Chunking::Even(k))) = early
            && self.send_early(&parts.enc, k)
        {
            let next = parts.enc.like();
            self.send(parts.base, std::mem::replace(&mut parts.enc, next), chunking);
            parts.base = parts.n + 1;
        }
        parts.n += 1;
    }

    /// Whether a part of a map of chunks of `k` is large enough to go before the rest.
    fn send_early(&self, enc: &Encoder, k: u32) -> bool {
        let default_chunks = matches!(self.chunksize.unwrap_or(Chunksize::Default), Chunksize::Default);
        (enc.len() >= k as usize && enc.bytes.len() >= SEND_EARLY_BYTES)
            || (default_chunks && enc.bytes.len() >= DEFAULT_TASK_BYTES)
    }

    /// Submits one part (items `base..`), or fails its items if the pool takes no more.
    fn send(&self, base: usize, enc: Encoder, chunking: Chunking) {
        let count = enc.len() as u32;
        if count == 0 {
            return;
        }
        let (bytes, index) = enc.finish();
        let sub = Submission {
            task: self.task,
            trampoline: self.trampoline,
            function: self.function,
            bytes: bytes.into(),
            index,
            base,
            chunking,
            timeout: self.timeout,
            retries: self.retries,
            sink: self.sink.clone(),
        };
        let job = Job::new(Arc::new(sub), 0, count);
        self.shared.submit_or_fail(job, false);
    }
}

/// After the first of `total` items: room for the rest if they are like the first
/// (bounded by a send-early part, and by [`MAX_RESERVE`]).
fn reserve_like_first(enc: &mut Encoder, total: usize, early: Option<Chunking>) {
    let per_part = match early {
        Some(Chunking::Fixed(k) | Chunking::Even(k)) => {
            total.min(k as usize + SEND_EARLY_BYTES / enc.bytes.len().max(1))
        }
        _ => total,
    };
    enc.bytes.reserve((enc.bytes.len() * per_part).min(MAX_RESERVE));
}
