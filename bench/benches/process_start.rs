//! The process start path: `Process::start` (re-exec, handshake) then `join` of a child
//! whose function does nothing. Each iteration is a real process.

use criterion::{Criterion, SamplingMode};
use multiproc::Process;

fn nothing(_: ()) {}

fn start_and_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("process");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(20);
    g.bench_function("start_handshake_join", |b| {
        b.iter(|| {
            let mut p = Process::new(nothing, ());
            p.start().unwrap();
            p.join().unwrap();
            assert_eq!(p.exitcode(), Some(0));
        })
    });
    g.finish();
}

fn main() {
    // The children are this benchmark binary, started again: they must stop here.
    multiproc::init();
    let mut c = Criterion::default().configure_from_args();
    start_and_join(&mut c);
    c.final_summary();
}
