//! Framing: queue + flush and recv of small frames over a socketpair, one frame per
//! syscall and 64 frames per syscall. Both ends live in this thread, so the figures are
//! the framing and syscall cost without any cross-process wake-up.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use multiproc::bench_api::FramedEnd;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Task {
    id: u64,
    fn_offset: i64,
    arg: u64,
}

const KIND: u8 = 0x40;

fn small_frames(c: &mut Criterion) {
    let (mut tx, mut rx) = FramedEnd::pair().unwrap();
    let mut g = c.benchmark_group("framing/small");
    for batch in [1u64, 64] {
        g.throughput(Throughput::Elements(batch));
        g.bench_with_input(BenchmarkId::new("queue_flush_recv", batch), &batch, |b, &batch| {
            b.iter(|| {
                for i in 0..batch {
                    tx.queue(KIND, &Task { id: i, fn_offset: -74_512, arg: i * 2 }).unwrap();
                }
                tx.flush().unwrap();
                for _ in 0..batch {
                    let (kind, task) = rx.recv::<Task>().unwrap();
                    black_box((kind, task));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, small_frames);
criterion_main!(benches);
