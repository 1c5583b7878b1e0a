//! The messages between a pool's driver and its workers, and the one place their
//! fixed-width headers are written and read ([`TaskHead`], [`ResultHead`]).
//!
//! After the handshake the driver sends `SETUP` (with the shared counter page as a
//! descriptor), then `TASK`s; a worker answers `READY` once its initializer ran, then one
//! `RESULT` per task, in the order it got them, except for tasks the driver took back
//! before the worker started them (see `claim`): those it reads and skips, silently.
//! Task and result heads are fixed-width little-endian integers; arguments and values are postcard, each item prefixed by
//! its length so a chunk can be split without knowing its types (see `pool::item`).
//!
//! The frame kinds are in the crate's table (`wire::kinds`).
//!
//! To add a result flag: a field in [`ResultFlags`], a bit constant beside `KEPT_BODY`
//! and a line in `bits`/`from_bits`; nothing else changes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pool::item::{u32_at, u64_at};
use crate::wire::kinds;

/// Driver → worker: [`Setup`], with the counter page attached.
pub(crate) const KIND_SETUP: u8 = kinds::POOL_SETUP;
/// Driver → worker: a task (one item or a chunk).
pub(crate) const KIND_TASK: u8 = kinds::POOL_TASK;
/// Driver → worker: finish what you hold, then exit.
pub(crate) const KIND_STOP: u8 = kinds::POOL_STOP;
/// Worker → driver: the initializer ran; tasks will run.
pub(crate) const KIND_READY: u8 = kinds::POOL_READY;
/// Worker → driver: the initializer panicked (a `String`); the worker exits.
pub(crate) const KIND_INIT_FAILED: u8 = kinds::POOL_INIT_FAILED;
/// Worker → driver: the outcomes of one task.
pub(crate) const KIND_RESULT: u8 = kinds::POOL_RESULT;
/// Worker → driver: the worker exits after the results it sent ([`Retire`]).
pub(crate) const KIND_RETIRE: u8 = kinds::POOL_RETIRE;

/// Driver → worker: a `TASK` whose payload is in a memfd (the frame's last descriptor).
pub(crate) const KIND_TASK_BIG: u8 = kinds::POOL_TASK_BIG;
/// Worker → driver: a `RESULT` whose payload is in a memfd.
pub(crate) const KIND_RESULT_BIG: u8 = kinds::POOL_RESULT_BIG;
/// Worker → driver: the id (a `u64`) of a task it skipped because the driver took it back
/// (`claim`). The driver checks it: a task it did not take back means the worker's claim
/// word was overwritten, and the worker is ended.
pub(crate) const KIND_SKIPPED: u8 = kinds::POOL_SKIPPED;
/// Payloads from this size on travel as a memfd: one copy in, a mapping out, instead of
/// many socket-buffer-sized round trips.
pub(crate) const SPILL_AT: usize = 256 * 1024;

/// A worker is sent no more tasks while this much of its spilled task bodies is
/// unanswered: a few large tasks keep it busy, and their memfds are then reused instead of
/// new ones being filled (page faults) for a deep window.
pub(crate) const SPILLED_IN_FLIGHT: usize = 6 << 20;

/// Task ids from here up are express tasks (the lane counts down from `u64::MAX`, the
/// driver up from 1): a caller waits for each, and usually sends the next at once.
pub(crate) const EXPRESS_IDS: u64 = 1 << 63;

/// Counter slots in the shared page: items started and items finished by the worker.
/// Then the worker's last words (`pool::last_words`, from slot 2), then the claim word
/// (`claim`), on a cache line of its own.
pub(crate) const SLOT_STARTED: usize = 0;
pub(crate) const SLOT_FINISHED: usize = 1;
pub(crate) const SLOT_CLAIM: usize = crate::pool::last_words::SLOTS_WITH_WORDS.next_multiple_of(8);
pub(crate) const SLOTS: usize = SLOT_CLAIM + 1;
const _: () = assert!(SLOT_FINISHED < crate::pool::last_words::SLOT_WORDS_LEN);

/// The head of a `TASK`: which task, which code runs it, how many items follow, and
/// the time it has (which the task reads through `multiproc::task`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskHead {
    pub(crate) id: u64,
    /// Offset of the pool trampoline made for the function's types.
    pub(crate) trampoline: i64,
    /// Offset of the function.
    pub(crate) function: i64,
    pub(crate) count: u32,
    pub(crate) limits: TimeLimits,
}

/// A task's time limits, counted from when its worker takes it: at `soft` the task is
/// told ([`crate::task::cancelled`]), at `hard` its worker is killed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimeLimits {
    pub(crate) soft: Option<Duration>,
    pub(crate) hard: Option<Duration>,
}

impl TimeLimits {
    /// On the wire: microseconds, 0 for none (a limit of 0 µs is sent as 1 µs).
    fn micros(d: Option<Duration>) -> u64 {
        d.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1))
    }

    fn from_micros(us: u64) -> Option<Duration> {
        (us != 0).then(|| Duration::from_micros(us))
    }
}

impl TaskHead {
    /// `id`, trampoline offset, function offset, item count, soft and hard limits (µs).
    pub(crate) const LEN: usize = 8 + 8 + 8 + 4 + 8 + 8;

    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let mut h = [0u8; Self::LEN];
        h[0..8].copy_from_slice(&self.id.to_le_bytes());
        h[8..16].copy_from_slice(&self.trampoline.to_le_bytes());
        h[16..24].copy_from_slice(&self.function.to_le_bytes());
        h[24..28].copy_from_slice(&self.count.to_le_bytes());
        h[28..36].copy_from_slice(&TimeLimits::micros(self.limits.soft).to_le_bytes());
        h[36..44].copy_from_slice(&TimeLimits::micros(self.limits.hard).to_le_bytes());
        h
    }

    /// The head and the items after it; `None` if `payload` is too short for a head.
    pub(crate) fn decode(payload: &[u8]) -> Option<(TaskHead, &[u8])> {
        let head = TaskHead {
            id: u64_at(payload, 0)?,
            trampoline: u64_at(payload, 8)? as i64,
            function: u64_at(payload, 16)? as i64,
            count: u32_at(payload, 24)?,
            limits: TimeLimits {
                soft: TimeLimits::from_micros(u64_at(payload, 28)?),
                hard: TimeLimits::from_micros(u64_at(payload, 36)?),
            },
        };
        Some((head, &payload[Self::LEN..]))
    }
}

/// What a worker says about a task besides its outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ResultFlags {
    /// The worker still holds part of the task's spilled body (a `Bytes` the function
    /// kept): the driver must not reuse that memfd.
    pub(crate) kept_body: bool,
}

impl ResultFlags {
    const KEPT_BODY: u32 = 1;

    fn bits(self) -> u32 {
        if self.kept_body { Self::KEPT_BODY } else { 0 }
    }

    fn from_bits(bits: u32) -> ResultFlags {
        ResultFlags { kept_body: bits & Self::KEPT_BODY != 0 }
    }
}

/// The head of a `RESULT`: which task, how long it ran, how many items follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResultHead {
    pub(crate) id: u64,
    /// Nanoseconds the task ran.
    pub(crate) elapsed: u64,
    pub(crate) count: u32,
    pub(crate) flags: ResultFlags,
}

impl ResultHead {
    /// `id`, elapsed nanoseconds, item count, flags.
    pub(crate) const LEN: usize = 8 + 8 + 4 + 4;

    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let mut h = [0u8; Self::LEN];
        h[0..8].copy_from_slice(&self.id.to_le_bytes());
        h[8..16].copy_from_slice(&self.elapsed.to_le_bytes());
        h[16..20].copy_from_slice(&self.count.to_le_bytes());
        h[20..24].copy_from_slice(&self.flags.bits().to_le_bytes());
        h
    }

    /// Writes the head over the first [`LEN`](Self::LEN) bytes of `out` (a worker
    /// reserves them, runs the items after them, then fills the head in).
    pub(crate) fn write_at(&self, out: &mut [u8]) {
        out[..Self::LEN].copy_from_slice(&self.encode());
    }

    /// The head and the items after it; `None` if `payload` is too short for a head.
    pub(crate) fn decode(payload: &[u8]) -> Option<(ResultHead, &[u8])> {
        let head = ResultHead {
            id: u64_at(payload, 0)?,
            elapsed: u64_at(payload, 8)?,
            count: u32_at(payload, 16)?,
            flags: ResultFlags::from_bits(u32_at(payload, 20)?),
        };
        Some((head, &payload[Self::LEN..]))
    }
}

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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn a_task_head_round_trips(
            (id, trampoline, function, count) in any::<(u64, i64, i64, u32)>(),
            soft in proptest::option::of(1..u64::MAX),
            hard in proptest::option::of(1..u64::MAX),
            tail in any::<Vec<u8>>(),
        ) {
            let limits = TimeLimits { soft: soft.map(Duration::from_micros), hard: hard.map(Duration::from_micros) };
            let head = TaskHead { id, trampoline, function, count, limits };
            let mut payload = head.encode().to_vec();
            payload.extend_from_slice(&tail);
            let (back, rest) = TaskHead::decode(&payload).unwrap();
            prop_assert_eq!(back, head);
            prop_assert_eq!(rest, &tail[..]);
            prop_assert!(TaskHead::decode(&payload[..TaskHead::LEN - 1]).is_none());
        }

        #[test]
        fn a_result_head_round_trips(id: u64, elapsed: u64, count: u32, kept_body: bool, tail: Vec<u8>) {
            let head = ResultHead { id, elapsed, count, flags: ResultFlags { kept_body } };
            let mut payload = vec![0; ResultHead::LEN];
            head.write_at(&mut payload);
            payload.extend_from_slice(&tail);
            let (back, rest) = ResultHead::decode(&payload).unwrap();
            prop_assert_eq!(back, head);
            prop_assert_eq!(rest, &tail[..]);
            prop_assert!(ResultHead::decode(&payload[..ResultHead::LEN - 1]).is_none());
        }
    }

    #[test]
    fn a_time_limit_below_a_microsecond_is_still_a_limit() {
        let limits = TimeLimits { soft: Some(Duration::from_nanos(10)), hard: Some(Duration::ZERO) };
        let head = TaskHead { id: 1, trampoline: 0, function: 0, count: 1, limits };
        let (back, _) = TaskHead::decode(&head.encode()).unwrap();
        assert_eq!(back.limits.soft, Some(Duration::from_micros(1)));
        assert_eq!(back.limits.hard, Some(Duration::from_micros(1)));
        let none = TaskHead { limits: TimeLimits::default(), ..head };
        assert_eq!(TaskHead::decode(&none.encode()).unwrap().0.limits, TimeLimits::default());
    }
}
