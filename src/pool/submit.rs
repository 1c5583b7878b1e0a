//! What the pool's users hand to an engine: submissions of encoded items, the jobs
//! they are cut into, and the sinks their outcomes go to.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::chunk::Chunking;
use super::error::{Attempt, TaskError};
use super::item::{Delivered, Items, Outcome, begin_item, end_item, item_outcome, u32_at};
use super::stats::PoolStats;
use crate::wire::{codec, fds};

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

    pub(crate) fn add_to(&self, stats: &mut PoolStats) {
        stats.tasks_done += self.done;
        stats.callback_panics += self.callback_panics;
        stats.tasks_panicked += self.panicked;
        stats.tasks_codec_failed += self.codec_failed;
    }
}

/// A submission keeps the byte offset of every `MARK_EVERY`-th item, not of every item: a
/// map of tiny items spent more fresh memory on its offsets (8 bytes an item) than on the
/// items. An item's offset is found from the mark before it by reading fewer than this
/// many length prefixes (a map of chunks of 1 looks one up for every task: few, then).
pub(crate) const MARK_EVERY: usize = 16;

/// A sink shared by several submissions (a map's collector, cut into parts) is one too.
impl<S: Sink + ?Sized> Sink for Arc<S> {
    fn deliver(&self, index: usize, outcome: Outcome<'_>) -> Delivered {
        (**self).deliver(index, outcome)
    }

    fn deliver_chunk(&self, task: &'static str, first: usize, body: &[u8], count: u32, tally: &mut Tally) -> u32 {
        (**self).deliver_chunk(task, first, body, count, tally)
    }

    fn cancelled(&self) -> bool {
        (**self).cancelled()
    }
}

/// Items encoded once, in the submitting thread, and kept until every one is answered
/// (a dead worker's items are sent again).
///
/// The sink is the last field, by value, so a submission and its sink are one
/// allocation: an `apply_async` makes a `Submission<Slot<R>>` (its `AsyncResult` holds the
/// same `Arc`) and hands the driver the `Arc<Submission>` it coerces to (the sink a
/// `dyn Sink`). A map's parts share their collector through an `Arc` sink.
pub(crate) struct Submission<S: ?Sized = dyn Sink> {
    pub(crate) task: &'static str,
    pub(crate) trampoline: i64,
    pub(crate) function: i64,
    /// Items, each a `u32` length and its postcard bytes.
    pub(crate) bytes: ItemBytes,
    /// The items' marks and descriptors; `None` when there are neither (most single items).
    pub(crate) index: Option<Box<ItemIndex>>,
    /// Index of the first item within the whole map.
    pub(crate) base: usize,
    pub(crate) chunking: Chunking,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: u32,
    pub(crate) sink: S,
}

impl<S: ?Sized> Submission<S> {
    /// Byte offset of items 0, [`MARK_EVERY`], 2 × [`MARK_EVERY`], … (empty for a single
    /// item).
    pub(crate) fn offsets(&self) -> &[usize] {
        self.index.as_deref().map_or(&[], |index| &index.offsets)
    }

    /// Descriptors some arguments carry: (item, its descriptors), by item. A task holds at
    /// most one such item, since each item numbers its descriptors from 0.
    pub(crate) fn fds(&self) -> &[(u32, Vec<OwnedFd>)] {
        self.index.as_deref().map_or(&[], |index| &index.fds)
    }

    /// The bytes of items `first..first + count`.
    pub(crate) fn slice(&self, first: u32, count: u32) -> &[u8] {
        let offsets = self.offsets();
        if offsets.is_empty() {
            &self.bytes
        } else {
            let start = offset_of(&self.bytes, offsets, first as usize);
            // A short run's end is nearer its start than a mark.
            let end = if (count as usize) < MARK_EVERY {
                skip_items(&self.bytes, start, count as usize)
            } else {
                offset_of(&self.bytes, offsets, (first + count) as usize)
            };
            &self.bytes[start..end]
        }
    }
}

/// The byte offset of item `i` of `bytes` (`i` may be the number of items: the end), from
/// `marks`, the offsets of every [`MARK_EVERY`]-th item (not empty).
fn offset_of(bytes: &[u8], marks: &[usize], i: usize) -> usize {
    let m = (i / MARK_EVERY).min(marks.len() - 1);
    skip_items(bytes, marks[m], i - m * MARK_EVERY)
}

/// The offset `n` items after the item at `at`.
fn skip_items(bytes: &[u8], mut at: usize, n: usize) -> usize {
    for _ in 0..n {
        // The items were checked or encoded here, so every prefix is there; past the end
        // (never) the slice is cut at the end rather than the driver failing.
        at = u32_at(bytes, at).map_or(bytes.len(), |len| (at + 4 + len as usize).min(bytes.len()));
    }
    at
}

/// Descriptors carried by items: (item index, its descriptors).
pub(crate) type ItemFds = Vec<(u32, Vec<OwnedFd>)>;

/// What only some submissions carry: a map part's item offsets and items' descriptors.
/// Boxed, and left out when empty, so that a single item (every `apply_async`) spends 8
/// bytes on them rather than two `Vec`s' 48: fewer fresh pages for its submitting thread.
pub(crate) struct ItemIndex {
    pub(crate) offsets: Vec<usize>,
    pub(crate) fds: ItemFds,
}

impl ItemIndex {
    /// The index of `offsets` and `fds`, or `None` if both are empty.
    pub(crate) fn boxed(offsets: Vec<usize>, fds: ItemFds) -> Option<Box<ItemIndex>> {
        if offsets.is_empty() && fds.is_empty() { None } else { Some(Box::new(ItemIndex { offsets, fds })) }
    }
}

/// Encodes items into a submission's buffer.
pub(crate) struct Encoder {
    pub(crate) bytes: Vec<u8>,
    /// The offsets of every [`MARK_EVERY`]-th item.
    offsets: Vec<usize>,
    /// Items encoded.
    count: usize,
    pub(crate) fds: ItemFds,
}

impl Encoder {
    pub(crate) fn new() -> Encoder {
        Encoder { bytes: Vec::new(), offsets: Vec::new(), count: 0, fds: Vec::new() }
    }

    /// With room for `items` items and `bytes` bytes, so a large map grows no buffer.
    pub(crate) fn with_capacity(items: usize, bytes: usize) -> Encoder {
        let offsets = Vec::with_capacity(items.div_ceil(MARK_EVERY));
        Encoder { bytes: Vec::with_capacity(bytes), offsets, count: 0, fds: Vec::new() }
    }

    /// An empty encoder sized like this one, with a quarter more room for bytes (for the
    /// next part of the same input). The next items are often a little larger (counting
    /// numbers grow a varint byte), and a part that outgrew its buffer by a few bytes was
    /// copied whole into a fresh one. Not much more: W1's parts (about 90 KiB) stay under
    /// the size from which the allocator maps fresh pages for every buffer.
    pub(crate) fn like(&self) -> Encoder {
        Encoder::with_capacity(self.len(), self.bytes.len() + self.bytes.len() / 4)
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
        if self.count.is_multiple_of(MARK_EVERY) {
            self.offsets.push(at);
        }
        self.count += 1;
        Ok(())
    }

    /// One item on its own (as `apply` sends it): no offsets, and no allocation for a
    /// small one (see [`ItemBytes`]). Encoded into a buffer this thread keeps, so the item
    /// is then copied into memory of its exact size.
    pub(crate) fn one<A: Serialize>(arg: &A) -> Result<(ItemBytes, ItemFds), String> {
        ONE_ITEM.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut buf) => {
                // Larger than kept only after an encoding that failed or panicked midway:
                // its memory is not kept for the thread's lifetime.
                if buf.capacity() > MAX_SCRATCH_BYTES {
                    *buf = Vec::new();
                }
                buf.clear();
                let fds = encode_one(arg, &mut buf)?;
                let bytes = if buf.len() > MAX_SCRATCH_BYTES {
                    ItemBytes::Heap(std::mem::take(&mut *buf))
                } else {
                    ItemBytes::copied(&buf)
                };
                Ok((bytes, fds))
            }
            // Encoding this argument submits another task (its `Serialize` does).
            Err(_) => {
                let mut buf = Vec::new();
                let fds = encode_one(arg, &mut buf)?;
                Ok((ItemBytes::Heap(buf), fds))
            }
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// The finished buffers: the items, and their marks (see [`MARK_EVERY`]; a single
    /// item needs none) and descriptors.
    pub(crate) fn finish(mut self) -> (Vec<u8>, Option<Box<ItemIndex>>) {
        if self.count == 1 {
            self.offsets = Vec::new();
        }
        (self.bytes, ItemIndex::boxed(self.offsets, self.fds))
    }
}

/// Encodes `arg` as one length-prefixed item at the end of `buf`.
fn encode_one<A: Serialize>(arg: &A, buf: &mut Vec<u8>) -> Result<ItemFds, String> {
    let at = begin_item(buf);
    let (r, new_fds) = fds::collect_outgoing(|| codec::encode_into(arg, buf));
    r.map_err(|e| e.to_string())?;
    end_item(buf, at);
    Ok(if new_fds.is_empty() { Vec::new() } else { vec![(0, new_fds)] })
}

/// An encoded item larger than this leaves the thread's buffer with its bytes rather
/// than being copied (the buffer then starts afresh).
const MAX_SCRATCH_BYTES: usize = 4096;

thread_local! {
    /// Where [`Encoder::one`] encodes, so a small item costs no allocation of its own.
    static ONE_ITEM: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Items of this many bytes or fewer (with their length prefix) are kept inside the
/// submission: an integer argument (4 + up to 10 bytes) costs no allocation, and the
/// enum stays the size of a `Vec`.
const INLINE_ITEM_BYTES: usize = 15;

/// A submission's items: inline when small, else on the heap.
#[derive(Clone)]
pub(crate) enum ItemBytes {
    /// `len` bytes at the start of `buf`.
    Inline {
        len: u8,
        buf: [u8; INLINE_ITEM_BYTES],
    },
    Heap(Vec<u8>),
}

impl ItemBytes {
    /// A copy of `bytes`: inline if it fits, else of its exact size.
    pub(crate) fn copied(bytes: &[u8]) -> ItemBytes {
        if bytes.len() <= INLINE_ITEM_BYTES {
            let mut buf = [0; INLINE_ITEM_BYTES];
            buf[..bytes.len()].copy_from_slice(bytes);
            ItemBytes::Inline { len: bytes.len() as u8, buf }
        } else {
            ItemBytes::Heap(bytes.to_vec())
        }
    }
}

impl From<Vec<u8>> for ItemBytes {
    fn from(bytes: Vec<u8>) -> ItemBytes {
        ItemBytes::Heap(bytes)
    }
}

impl std::ops::Deref for ItemBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ItemBytes::Inline { len, buf } => &buf[..*len as usize],
            ItemBytes::Heap(v) => v,
        }
    }
}

/// A job's earlier runs whose worker died: boxed, and absent until the first, so a job
/// (one per `apply_async`, queued by the submitting thread) is 16 bytes smaller than with
/// a `Vec` of its own.
#[derive(Clone, Default)]
// A boxed slice would be a fat pointer (16 bytes); a boxed `Vec`'s is 8, and the rare
// retry may well pay for the second allocation.
#[allow(clippy::box_collection)]
pub(crate) struct Attempts(Option<Box<Vec<Attempt>>>);

impl Attempts {
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |runs| runs.len())
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn push(&mut self, attempt: Attempt) {
        self.0.get_or_insert_default().push(attempt);
    }

    /// The runs, oldest first.
    pub(crate) fn to_vec(&self) -> Vec<Attempt> {
        self.0.as_deref().cloned().unwrap_or_default()
    }
}

/// A run of items of one submission waiting for a worker.
pub(crate) struct Job {
    pub(crate) sub: Arc<Submission>,
    pub(crate) first: u32,
    pub(crate) count: u32,
    /// Earlier runs whose worker died (for `retries`).
    pub(crate) attempts: Attempts,
    /// One of several items a death could not tell apart (their results were lost with
    /// their worker): it runs alone on a worker, so a second death names it for sure.
    pub(crate) isolate: bool,
}

impl Job {
    /// Items `first..first + count` of `sub`, never run before.
    pub(crate) fn new(sub: Arc<Submission>, first: u32, count: u32) -> Job {
        Job { sub, first, count, attempts: Attempts::default(), isolate: false }
    }

    /// Items `from..from + count` of this job, as a job of their own with no attempts.
    pub(crate) fn part(&self, from: u32, count: u32) -> Job {
        Job::new(self.sub.clone(), self.first + from, count)
    }

    /// Delivers the same failure to every item of the job; `each` sees every error
    /// first (the driver counts them).
    pub(crate) fn fail_each(&self, err: impl Fn(&'static str) -> TaskError, mut each: impl FnMut(&TaskError)) {
        let sub = &self.sub;
        for k in 0..self.count {
            let e = err(sub.task);
            each(&e);
            let _ = sub.sink.deliver(sub.base + (self.first + k) as usize, Outcome::Failed(e));
        }
    }

    /// Delivers the same failure to every item of the job.
    pub(crate) fn fail(&self, err: impl Fn(&'static str) -> TaskError) {
        self.fail_each(err, |_| {});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_found_from_the_marks_of_every_few() {
        // Items of varying sizes, more than a few marks' worth.
        let words: Vec<String> = (0..3 * MARK_EVERY + 5).map(|i| "x".repeat(i % 7)).collect();
        let mut enc = Encoder::new();
        for w in &words {
            enc.push(w).unwrap();
        }
        assert_eq!(enc.len(), words.len());
        let (bytes, index) = enc.finish();
        let marks = index.expect("several items have marks").offsets;
        assert_eq!(marks.len(), words.len().div_ceil(MARK_EVERY));
        // Each item alone, and a few runs, as the driver cuts them.
        let alone = |i: usize| &bytes[offset_of(&bytes, &marks, i)..offset_of(&bytes, &marks, i + 1)];
        for (i, w) in words.iter().enumerate() {
            let item = alone(i);
            assert_eq!(u32_at(item, 0), Some(item.len() as u32 - 4), "item {i}");
            assert_eq!(codec::decode::<String>(&item[4..]).unwrap(), *w, "item {i}");
        }
        assert_eq!(offset_of(&bytes, &marks, words.len()), bytes.len());
        for (first, count) in [(0, words.len()), (15, 2), (16, 16), (20, 25), (40, words.len() - 40)] {
            let run = &bytes[offset_of(&bytes, &marks, first)..offset_of(&bytes, &marks, first + count)];
            let expected: Vec<u8> = (first..first + count).flat_map(|i| alone(i).to_vec()).collect();
            assert_eq!(run, &expected[..], "items {first}..+{count}");
            let start = offset_of(&bytes, &marks, first);
            assert_eq!(skip_items(&bytes, start, count), start + run.len(), "items {first}..+{count}");
        }
    }

    #[test]
    fn a_small_item_is_kept_inline_and_a_large_one_on_the_heap() {
        assert_eq!(std::mem::size_of::<ItemBytes>(), std::mem::size_of::<Vec<u8>>());
        let (small, fds) = Encoder::one(&u64::MAX).unwrap();
        assert!(matches!(small, ItemBytes::Inline { .. }) && fds.is_empty());
        assert_eq!(codec::decode::<u64>(&small[4..]).unwrap(), u64::MAX);
        for n in [INLINE_ITEM_BYTES, MAX_SCRATCH_BYTES + 1] {
            let (large, _) = Encoder::one(&"y".repeat(n)).unwrap();
            assert!(matches!(large, ItemBytes::Heap(_)));
            assert_eq!(u32_at(&large, 0), Some(large.len() as u32 - 4));
            assert_eq!(codec::decode::<String>(&large[4..]).unwrap().len(), n);
        }
        // The thread's buffer survives a value too large to copy.
        assert_eq!(codec::decode::<u64>(&Encoder::one(&7u64).unwrap().0[4..]).unwrap(), 7);
    }

    /// A large value whose encoding fails after most of it was written.
    struct FailsLate(String);

    impl serde::Serialize for FailsLate {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::{Error, SerializeTuple};
            let mut t = s.serialize_tuple(2)?;
            t.serialize_element(&self.0)?;
            t.end()?;
            Err(S::Error::custom("fails late"))
        }
    }

    #[test]
    fn the_threads_buffer_lets_go_of_a_large_encoding_that_failed() {
        let e = Encoder::one(&FailsLate("y".repeat(1 << 20))).err().expect("the encoding fails");
        assert!(e.contains("FailsLate"), "{e}");
        assert_eq!(codec::decode::<u64>(&Encoder::one(&7u64).unwrap().0[4..]).unwrap(), 7);
        assert!(ONE_ITEM.with(|b| b.borrow().capacity()) <= MAX_SCRATCH_BYTES);
    }

    #[test]
    fn a_job_keeps_its_attempts_boxed_and_in_order() {
        assert!(std::mem::size_of::<Job>() <= 40, "a queued job stays small");
        let mut attempts = Attempts::default();
        assert!(attempts.is_empty() && attempts.to_vec().is_empty());
        for pid in [7, 8] {
            attempts.push(Attempt { pid, signal: Some(9), exit_code: None });
        }
        let again = attempts.clone();
        assert_eq!(again.len(), 2);
        assert_eq!(again.to_vec().iter().map(|a| a.pid).collect::<Vec<_>>(), [7, 8]);
    }

    #[test]
    fn a_single_item_keeps_no_marks() {
        let mut enc = Encoder::new();
        enc.push(&7u64).unwrap();
        let (bytes, index) = enc.finish();
        assert!(index.is_none(), "neither marks nor descriptors: nothing boxed");
        assert_eq!(bytes.len(), 5);
    }
}
