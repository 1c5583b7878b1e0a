//! A map's per-item work in the parent, on W1's chunks (12,500 `u64` items): encoding
//! the arguments as `Pool::map` does in the calling thread, and delivering a result
//! chunk to the map's collector as the driver does.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use multiproc::bench_api::{collect_result_chunk, encode_map_items, result_chunk};

const CHUNK: u64 = 12_500;

fn map_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("map/w1_chunk");
    g.throughput(Throughput::Elements(CHUNK));
    g.bench_function("encode_arguments", |b| b.iter(|| encode_map_items(black_box(0..CHUNK))));
    let values: Vec<u64> = (0..CHUNK).map(|x| x * 2).collect();
    let body = result_chunk(&values);
    assert_eq!(collect_result_chunk::<u64>(&body, CHUNK as u32), values);
    g.bench_function("collect_results", |b| b.iter(|| collect_result_chunk::<u64>(black_box(&body), CHUNK as u32)));
    g.finish();
}

criterion_group!(benches, map_path);
criterion_main!(benches);
