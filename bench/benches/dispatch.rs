//! The pool's dispatch path, end to end with real workers: one `apply` (the express lane:
//! the calling thread and an idle worker), a burst of `apply_async` through the driver,
//! and tiny maps with chunk size 1 and Python's default chunk size.

use criterion::{Criterion, Throughput};
use multiproc::{Chunksize, MapOptions, Pool};

fn double(x: u64) -> u64 {
    x * 2
}

fn dispatch(c: &mut Criterion) {
    let pool = Pool::new(2).unwrap();
    // Every worker ran a task before the clock starts.
    pool.map(double, 0..64).unwrap();

    let mut g = c.benchmark_group("pool");
    g.bench_function("apply", |b| b.iter(|| pool.apply(double, std::hint::black_box(21)).unwrap()));

    const BURST: u64 = 1_000;
    g.throughput(Throughput::Elements(BURST));
    g.bench_function("apply_async_burst_1000", |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..BURST).map(|i| pool.apply_async(double, i)).collect();
            handles.into_iter().map(|h| h.get().unwrap()).sum::<u64>()
        })
    });

    const ITEMS: u64 = 10_000;
    g.throughput(Throughput::Elements(ITEMS));
    let one = MapOptions::new().chunksize(Chunksize::Fixed(1));
    g.bench_function("map_10000_chunksize_1", |b| {
        b.iter(|| pool.map_async_with(double, 0..ITEMS, &one).get().unwrap().len())
    });
    g.bench_function("map_10000_default_chunksize", |b| b.iter(|| pool.map(double, 0..ITEMS).unwrap().len()));
    g.finish();
}

fn main() {
    // The workers are this benchmark binary, started again: they must stop here.
    multiproc::init();
    let mut c = Criterion::default().configure_from_args();
    dispatch(&mut c);
    c.final_summary();
}
