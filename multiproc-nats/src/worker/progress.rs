//! A task's progress: which of its items already have their results stored for its
//! client. While a task of many items runs, the results of its finished items are stored
//! in batches as it goes ([`Pending`], [`flush_due`]), and each stored batch is noted in
//! the pool's progress stream; a redelivery of the task (its worker died) reads that note
//! ([`stored_items`]) and runs only the items it lacks ([`missing`]).
//!
//! A note is written only once the results it names are confirmed stored, so it never
//! claims more than is there: a worker that dies between the two costs a re-run of that
//! batch (whose duplicates the client drops), never an item. A note that cannot be read
//! runs every item, for the same reason.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde::{Deserialize, Serialize};

use crate::envelope::{ItemResults, PROTOCOL, RemoteError};

/// A batch this large goes at once, however young: its results would make a large
/// message anyway, and holding more costs memory for nothing.
pub(super) const FLUSH_BYTES: usize = 512 * 1024;

/// How long a redelivered task waits for its note before it runs every item.
const LOOKUP_PATIENCE: Duration = Duration::from_secs(2);

/// How long a finished item's result may wait for the rest of its batch: a sixth of the
/// queue's `ack_wait` (what a dead worker's task waits before its redelivery), between
/// 10 ms and a second. A task shorter than this stores its results only at its end, as
/// one batch, so small tasks cost no more messages than before.
pub(super) fn flush_every(ack_wait: Duration) -> Duration {
    (ack_wait / 6).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Whether a batch of `bytes` bytes whose oldest result came at `oldest` goes now.
pub(super) fn flush_due(bytes: usize, oldest: Option<Instant>, now: Instant, every: Duration) -> bool {
    oldest.is_some_and(|t| bytes >= FLUSH_BYTES || now.saturating_duration_since(t) >= every)
}

/// Some items of a task, as sorted, disjoint, non-adjacent runs `(first, count)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ItemSet {
    runs: Vec<(u32, u32)>,
}

impl ItemSet {
    /// Whether item `k` is in the set.
    pub(super) fn contains(&self, k: u32) -> bool {
        let at = self.runs.partition_point(|&(first, _)| first <= k);
        at > 0 && k - self.runs[at - 1].0 < self.runs[at - 1].1
    }

    /// Adds items `first..first + count`.
    pub(super) fn add(&mut self, first: u32, count: u32) {
        if count == 0 {
            return;
        }
        self.runs.push((first, count));
        self.runs.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.runs.len());
        for &(first, count) in &self.runs {
            match merged.last_mut() {
                Some((f, c)) if first <= *f + *c => *c = (*c).max(first + count - *f),
                _ => merged.push((first, count)),
            }
        }
        self.runs = merged;
    }

    /// Whether it holds no item.
    pub(super) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// How many of items `0..items` are in the set.
    pub(super) fn count_below(&self, items: u32) -> u32 {
        self.runs.iter().map(|&(first, count)| (first + count).min(items).saturating_sub(first)).sum()
    }
}

/// The items of a task of `items` items that are not in `stored`: those to run.
pub(super) fn missing(items: u32, stored: &ItemSet) -> Vec<u32> {
    (0..items).filter(|&k| !stored.contains(k)).collect()
}

/// What a progress note says: which items of a task of `items` items have their results
/// stored.
#[derive(Debug, Serialize, Deserialize)]
struct Note {
    version: u16,
    items: u32,
    stored: ItemSet,
}

/// A note's bytes.
fn encode_note(items: u32, stored: &ItemSet) -> Vec<u8> {
    postcard::to_stdvec(&Note { version: PROTOCOL, items, stored: stored.clone() }).expect("a note always encodes")
}

/// The items a note names, if it is one of this protocol about a task of `items` items.
fn decode_note(bytes: &[u8], items: u32) -> Option<ItemSet> {
    let note: Note = postcard::from_bytes(bytes).ok()?;
    (note.version == PROTOCOL && note.items == items).then_some(note.stored)
}

/// The items a note names as stored, as runs `(first, count)`, whatever its task (for
/// tests that wait for a note).
pub(crate) fn noted_runs(bytes: &[u8]) -> Option<Vec<(u32, u32)>> {
    let note: Note = postcard::from_bytes(bytes).ok()?;
    (note.version == PROTOCOL).then_some(note.stored.runs)
}

/// The items of a task of `items` items that have their results stored, as its note on
/// `subject` says; none when there is no note or it cannot be read in time (then every
/// item runs again: never fewer than needed).
pub(super) async fn stored_items(progress: &jetstream::stream::Stream, subject: &str, items: u32) -> ItemSet {
    match tokio::time::timeout(LOOKUP_PATIENCE, progress.get_last_raw_message_by_subject(subject)).await {
        Ok(Ok(note)) => decode_note(&note.payload, items).unwrap_or_default(),
        _ => ItemSet::default(),
    }
}

/// Notes on `subject` that `stored` of a task's `items` items have their results
/// stored (best effort: a note lost costs only re-runs).
pub(super) async fn note_stored(js: &jetstream::Context, subject: String, items: u32, stored: &ItemSet) {
    let note = encode_note(items, stored);
    if let Ok(ack) = js.publish(subject, note.into()).await {
        let _ = tokio::time::timeout(LOOKUP_PATIENCE, ack).await;
    }
}

/// Removes the note on `subject` of a task that is acked: nobody will read it again
/// (best effort: a note left behind expires with the result TTL).
pub(super) async fn forget(progress: jetstream::stream::Stream, subject: String) {
    let _ = tokio::time::timeout(LOOKUP_PATIENCE, progress.purge().filter(subject)).await;
}

/// The finished items of a running task whose results are not sent yet: filled by the
/// slot thread that runs it, taken by the worker's loop.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// The items, in the order they finished.
    items: Vec<u32>,
    /// Their outcomes, in the same order.
    results: ItemResults,
    bytes: usize,
    /// When the oldest of them finished.
    oldest: Option<Instant>,
    /// Whether the loop was told this batch is full.
    told: bool,
}

impl Pending {
    /// Adds item `k`'s outcome (`now` tells the time, asked only of a batch's first). True
    /// when the batch just became full: the loop should send it now rather than at its
    /// next look.
    pub(super) fn push(&mut self, k: u32, outcome: Result<&[u8], &RemoteError>, now: impl FnOnce() -> Instant) -> bool {
        self.results.push(outcome);
        self.items.push(k);
        self.bytes += self.results.entry_len(self.results.len() - 1);
        self.oldest.get_or_insert_with(now);
        let full = self.bytes >= FLUSH_BYTES && !self.told;
        self.told |= full;
        full
    }

    /// Whether the batch goes now.
    pub(super) fn due(&self, now: Instant, every: Duration) -> bool {
        flush_due(self.bytes, self.oldest, now, every)
    }

    /// Takes the batch: its items in runs of consecutive items, each `(first item,
    /// outcomes)`, in item order.
    pub(super) fn take(&mut self) -> Vec<(u32, ItemResults)> {
        let items = std::mem::take(&mut self.items);
        let results = std::mem::take(&mut self.results);
        (self.bytes, self.oldest, self.told) = (0, None, false);
        if items.windows(2).all(|w| w[1] == w[0] + 1) {
            // Finished in order, as most tasks do: one run, no copy.
            return items.first().map(|&first| vec![(first, results)]).unwrap_or_default();
        }
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_unstable_by_key(|&i| items[i]);
        let mut runs: Vec<(u32, ItemResults)> = Vec::new();
        for i in order {
            let entry = results.entries(i..i + 1);
            match runs.last_mut() {
                Some((first, run)) if *first + run.len() as u32 == items[i] => run.push_entry(entry),
                _ => {
                    let mut run = ItemResults::new();
                    run.push_entry(entry);
                    runs.push((items[i], run));
                }
            }
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(runs: &[(u32, u32)]) -> ItemSet {
        let mut s = ItemSet::default();
        for &(first, count) in runs {
            s.add(first, count);
        }
        s
    }

    #[test]
    fn the_items_to_run_again_are_those_not_stored() {
        assert_eq!(missing(5, &ItemSet::default()), [0, 1, 2, 3, 4]);
        assert_eq!(missing(8, &set(&[(0, 3), (5, 1)])), [3, 4, 6, 7]);
        assert_eq!(missing(4, &set(&[(0, 2), (2, 2)])), Vec::<u32>::new());
        // Runs merge when they touch or overlap, in any order.
        assert_eq!(set(&[(4, 2), (0, 2), (2, 2), (5, 3)]), set(&[(0, 8)]));
        assert_eq!(set(&[(0, 3), (5, 1)]).count_below(8), 4);
        assert_eq!(set(&[(0, 3), (5, 10)]).count_below(8), 6);
    }

    #[test]
    fn a_note_is_read_only_for_its_own_task_shape_and_protocol() {
        let stored = set(&[(0, 3), (7, 2)]);
        let bytes = encode_note(10, &stored);
        assert_eq!(decode_note(&bytes, 10), Some(stored));
        assert_eq!(decode_note(&bytes, 11), None, "another task's shape: run everything");
        assert_eq!(decode_note(b"garbage", 10), None);
    }

    #[test]
    fn a_batch_goes_when_old_enough_or_large_enough_and_never_empty() {
        let now = Instant::now();
        let every = Duration::from_millis(100);
        assert!(!flush_due(0, None, now, every), "nothing to send");
        assert!(!flush_due(10, Some(now), now + Duration::from_millis(99), every));
        assert!(flush_due(10, Some(now), now + every, every));
        assert!(flush_due(FLUSH_BYTES, Some(now), now, every));
        assert_eq!(flush_every(Duration::from_secs(10)), Duration::from_secs(1));
        assert_eq!(flush_every(Duration::from_millis(600)), Duration::from_millis(100));
        assert_eq!(flush_every(Duration::from_millis(30)), Duration::from_millis(10));
    }

    #[test]
    fn a_batch_says_once_that_it_is_full() {
        let now = Instant::now();
        let mut p = Pending::default();
        let big = vec![0u8; FLUSH_BYTES / 2];
        assert!(!p.push(0, Ok(&big), || now));
        assert!(p.push(1, Ok(&big), || now), "full");
        assert!(!p.push(2, Ok(&big), || now), "said once");
        assert_eq!(p.take().len(), 1);
        assert!(!p.due(now + Duration::from_secs(9), Duration::from_secs(1)), "empty after it was taken");
    }

    #[test]
    fn a_batch_is_taken_as_runs_of_consecutive_items_in_item_order() {
        let now = Instant::now();
        let mut p = Pending::default();
        for k in [3u32, 0, 4, 1, 7] {
            p.push(k, Ok(&[k as u8]), || now);
        }
        let runs = p.take();
        let shape: Vec<(u32, Vec<u8>)> = runs
            .iter()
            .map(|(first, r)| (*first, (0..r.len()).map(|i| r.get(i).unwrap().unwrap()[0]).collect()))
            .collect();
        assert_eq!(shape, [(0, vec![0, 1]), (3, vec![3, 4]), (7, vec![7])]);
        // In order: one run, as it came.
        for k in [5u32, 6, 7] {
            p.push(k, Ok(&[k as u8]), || now);
        }
        let runs = p.take();
        assert_eq!((runs.len(), runs[0].0, runs[0].1.len()), (1, 5, 3));
        assert!(p.take().is_empty());
    }
}
