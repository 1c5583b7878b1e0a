//! The messages between a pool's driver and its workers.
//!
//! After the handshake the driver sends `SETUP` (with the shared counter page as a
//! descriptor), then `TASK`s; a worker answers `READY` once its initializer ran, then one
//! `RESULT` per task, in the order it got them. Task and result headers are fixed-width
//! little-endian integers; arguments and values are postcard, each item prefixed by
//! its length so a chunk can be split without knowing its types.

use serde::{Deserialize, Serialize};

/// Driver → worker: [`Setup`], with the counter page attached.
pub(crate) const KIND_SETUP: u8 = 0xB0;
/// Driver → worker: a task (one item or a chunk).
pub(crate) const KIND_TASK: u8 = 0xB1;
/// Driver → worker: finish what you hold, then exit.
pub(crate) const KIND_STOP: u8 = 0xB2;
/// Worker → driver: the initializer ran; tasks will run.
pub(crate) const KIND_READY: u8 = 0xB3;
/// Worker → driver: the initializer panicked (a `String`); the worker exits.
pub(crate) const KIND_INIT_FAILED: u8 = 0xB4;
/// Worker → driver: the outcomes of one task.
pub(crate) const KIND_RESULT: u8 = 0xB5;
/// Worker → driver: the worker exits after the results it sent ([`Retire`]).
pub(crate) const KIND_RETIRE: u8 = 0xB6;

/// Driver → worker: a `TASK` whose payload is in a memfd (the frame's last descriptor).
pub(crate) const KIND_TASK_BIG: u8 = 0xB7;
/// Worker → driver: a `RESULT` whose payload is in a memfd.
pub(crate) const KIND_RESULT_BIG: u8 = 0xB8;
/// Payloads from this size on travel as a memfd: one copy in, a mapping out, instead of
/// many socket-buffer-sized round trips.
pub(crate) const SPILL_AT: usize = 256 * 1024;

/// A worker is sent no more tasks while this much of its spilled task bodies is
/// unanswered: a few large tasks keep it busy, and their memfds are then reused instead of
/// new ones being filled (page faults) for a deep window.
pub(crate) const SPILLED_IN_FLIGHT: usize = 6 << 20;

/// Set in a result's elapsed time when the worker still holds part of the task's spilled
/// body (a `Bytes` the function kept): the driver must not reuse that memfd.
pub(crate) const RESULT_KEPT_BODY: u64 = 1 << 63;

/// Task ids from here up are express tasks (the lane counts down from `u64::MAX`, the
/// driver up from 1): a caller waits for each, and usually sends the next at once.
pub(crate) const EXPRESS_IDS: u64 = 1 << 63;

/// Counter slots in the shared page: items started and items finished by the worker,
/// then its last words (see `last_words.rs`): their length, then their bytes.
pub(crate) const SLOT_STARTED: usize = 0;
pub(crate) const SLOT_FINISHED: usize = 1;
pub(crate) const SLOT_WORDS_LEN: usize = 2;
pub(crate) const SLOT_WORDS: usize = 3;
/// Room for a worker's last words, in bytes.
pub(crate) const WORDS_BYTES: usize = 3 * 1024;
pub(crate) const SLOTS: usize = SLOT_WORDS + WORDS_BYTES / 8;

/// Item outcome tags in a result.
pub(crate) const TAG_OK: u8 = 0;
pub(crate) const TAG_PANIC: u8 = 1;
pub(crate) const TAG_CODEC: u8 = 2;

/// `id`, trampoline offset, function offset, item count.
pub(crate) const TASK_HEAD: usize = 8 + 8 + 8 + 4;
/// `id`, elapsed nanoseconds, item count.
pub(crate) const RESULT_HEAD: usize = 8 + 8 + 4;

/// What a worker needs before its first task.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Setup {
    pub(crate) max_tasks: Option<u64>,
    pub(crate) max_memory: Option<u64>,
    pub(crate) address_space: Option<u64>,
    /// Trampoline offset, function offset, encoded argument.
    pub(crate) initializer: Option<(i64, i64, Vec<u8>)>,
}

/// Why a worker retires by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Retire {
    MaxTasks,
    Memory { rss: u64 },
}

/// A panic, as a worker reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PanicReport {
    pub(crate) message: String,
    pub(crate) location: String,
    pub(crate) backtrace: Option<String>,
}

/// Why a worker is about to end, left in the counter page (see `last_words.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum LastWords {
    /// A panic the process will not survive (`panic = "abort"`, or a panic while panicking).
    Panic(PanicReport),
    /// The worker ends by itself, for this reason (for example its connection is gone).
    Cause(String),
}

impl LastWords {
    /// Makes the words shorter (the backtrace goes first, then half the text); `false`
    /// when there is nothing left to cut.
    pub(crate) fn shorten(&mut self) -> bool {
        let halve = |s: &mut String| {
            if s.len() < 16 {
                return false;
            }
            let mut at = s.len() / 2;
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            s.truncate(at);
            s.push('…');
            true
        };
        match self {
            LastWords::Panic(p) if p.backtrace.is_some() => {
                p.backtrace = None;
                true
            }
            LastWords::Panic(p) => halve(&mut p.message) || halve(&mut p.location),
            LastWords::Cause(c) => halve(c),
        }
    }
}

pub(crate) fn task_head(id: u64, trampoline: i64, function: i64, count: u32) -> [u8; TASK_HEAD] {
    let mut h = [0u8; TASK_HEAD];
    h[0..8].copy_from_slice(&id.to_le_bytes());
    h[8..16].copy_from_slice(&trampoline.to_le_bytes());
    h[16..24].copy_from_slice(&function.to_le_bytes());
    h[24..28].copy_from_slice(&count.to_le_bytes());
    h
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap()))
}

#[inline]
pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap()))
}

/// Splits length-prefixed items: yields up to `count` items; `taken` says how many
/// were well formed once it stops.
pub(crate) struct Items<'a> {
    body: &'a [u8],
    left: u32,
    pub(crate) taken: u32,
}

impl<'a> Items<'a> {
    pub(crate) fn new(body: &'a [u8], count: u32) -> Self {
        Items { body, left: count, taken: 0 }
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let len = u32_at(self.body, 0)? as usize;
        let item = self.body.get(4..4 + len)?;
        self.body = &self.body[4 + len..];
        self.left -= 1;
        self.taken += 1;
        Some(item)
    }
}

/// Splits length-prefixed items: calls `each(index, bytes)` for up to `count` items.
/// Returns how many were well formed.
pub(crate) fn for_each_item(body: &[u8], count: u32, mut each: impl FnMut(u32, &[u8])) -> u32 {
    let mut items = Items::new(body, count);
    for (i, item) in (&mut items).enumerate() {
        each(i as u32, item);
    }
    items.taken
}

/// Appends a length prefix placeholder; returns where to patch it.
pub(crate) fn begin_item(buf: &mut Vec<u8>) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    at
}

/// Patches the length prefix written by [`begin_item`].
pub(crate) fn end_item(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at - 4) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_a_cut_list_stops_early() {
        let mut buf = Vec::new();
        for word in ["a", "bcd", ""] {
            let at = begin_item(&mut buf);
            buf.extend_from_slice(word.as_bytes());
            end_item(&mut buf, at);
        }
        let mut seen = Vec::new();
        assert_eq!(for_each_item(&buf, 3, |i, b| seen.push((i, b.to_vec()))), 3);
        assert_eq!(seen[1], (1, b"bcd".to_vec()));
        assert_eq!(for_each_item(&buf[..buf.len() - 3], 3, |_, _| {}), 2);
    }
}
