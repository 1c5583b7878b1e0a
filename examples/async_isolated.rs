//! One-off isolated calls (pebble's `concurrent.process`): `f(arg)` in a fresh process of
//! its own, with a timeout and an address-space cap, returning the value or the pool's
//! error, or started and joined later; then what one call costs, measured against a bare `Process` start and a call
//! on a pool that is already up.
//!
//! Run with `cargo run --release --example async_isolated`.

use std::time::{Duration, Instant};

use multiproc::{Isolated, Pool, Process, TaskError, isolated};

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

fn untrusted(input: String) -> usize {
    if input.is_empty() {
        panic!("empty input");
    }
    input.len()
}

fn nothing(_: u64) {}

/// The mean time of `n` runs of `f`.
fn mean(n: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

fn main() {
    multiproc::init();
    println!("fib(25) = {}", isolated(fib, 25).unwrap());
    match isolated(untrusted, String::new()) {
        Err(TaskError::Panicked { message, .. }) => println!("the call panicked: {message}"),
        other => println!("unexpected: {other:?}"),
    }
    match Isolated::new(fib, 90).timeout(Duration::from_millis(200)).call() {
        Err(e @ TaskError::Timeout { .. }) => println!("{e}"),
        other => println!("unexpected: {other:?}"),
    }

    let running = Isolated::new(fib, 30).start().unwrap();
    println!("fib(30) runs in process {}; meanwhile the caller goes on", running.pid());
    println!("fib(30) = {}", running.join().unwrap());

    let n = 20;
    let one_off = mean(n, || assert_eq!(isolated(fib, 1).unwrap(), 1));
    let process = mean(n, || {
        let mut p = Process::new(nothing, 0);
        p.start().unwrap();
        p.join().unwrap();
    });
    let pool = Pool::new(1).unwrap();
    let warm = mean(n, || assert_eq!(pool.apply(fib, 1).unwrap(), 1));
    println!(
        "one isolated call: {one_off:?}; a bare Process start + join: {process:?}; a call on a running pool: {warm:?}"
    );
}
