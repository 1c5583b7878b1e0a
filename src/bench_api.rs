//! Entry points for the criterion benchmarks (`bench/benches/`): the wire layer's codec and
//! framing, and the pool's map path.
//!
//! Compiled only with the `bench-internals` feature, which the benchmarks turn on; it is
//! not part of the crate's API and may change with the layers it reaches. It sits at the
//! top so that no layer has to reach up into another for a benchmark's sake.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::wire::bench_api::{FramedEnd, decode, encode_into};

/// Encodes `items` as `Pool::map` does in the calling thread (a length prefix, the value,
/// its offset and a descriptor scope per item); returns the encoded size.
pub fn encode_map_items<A: Serialize>(items: impl IntoIterator<Item = A>) -> usize {
    crate::pool::bench::encode_items(items)
}

/// The body of a result chunk holding `values`, as a worker encodes it.
pub fn result_chunk<R: Serialize>(values: &[R]) -> Vec<u8> {
    crate::pool::bench::result_chunk(values)
}

/// Delivers a result chunk of `count` items to a whole map's collector, as the pool's
/// driver does, and takes the values as `MapResult::get` does.
pub fn collect_result_chunk<R: DeserializeOwned + Send + 'static>(body: &[u8], count: u32) -> Vec<R> {
    crate::pool::bench::collect_chunk(body, count)
}
