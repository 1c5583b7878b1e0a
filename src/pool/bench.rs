//! The map's hot paths, for the criterion benchmarks in `bench/benches/` (only with the
//! `bench-internals` feature; not an API).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::item::{TAG_OK, begin_item, end_item};
use super::map::Collector;
use super::submit::{Encoder, Sink, Tally};
use crate::wire::codec;

/// Encodes `items` as `map` does in the calling thread; returns the encoded size.
pub(crate) fn encode_items<A: Serialize>(items: impl IntoIterator<Item = A>) -> usize {
    let items = items.into_iter();
    let mut enc = Encoder::with_capacity(items.size_hint().0, 0);
    for a in items {
        enc.push(&a).expect("a benchmark item encodes");
    }
    let (bytes, index) = enc.finish();
    bytes.len() + index.map_or(0, |index| index.offsets.len())
}

/// A result chunk's body, as a worker encodes `values`.
pub(crate) fn result_chunk<R: Serialize>(values: &[R]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        let at = begin_item(&mut out);
        out.push(TAG_OK);
        codec::encode_into(v, &mut out).expect("a benchmark value encodes");
        end_item(&mut out, at);
    }
    out
}

/// Delivers a result chunk of `count` items to a whole map's collector, as the driver
/// does, and takes the values as `get` does.
pub(crate) fn collect_chunk<R: DeserializeOwned + Send + 'static>(body: &[u8], count: u32) -> Vec<R> {
    let collector = Collector::<R>::for_map("bench", count as usize, None);
    let mut tally = Tally::default();
    let taken = collector.deliver_chunk("bench", 0, body, count, &mut tally);
    assert_eq!(taken, count, "a benchmark chunk is well formed");
    collector.take_values(count as usize).expect("every benchmark item is a value")
}
