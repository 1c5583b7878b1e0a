//! Results in completion order, the most common `concurrent.futures` pattern: submit
//! separately, then take each result as soon as its task ends — from two pools at once —
//! and `wait_results` for the first of several to finish.
//!
//! Run with `cargo run --example async_as_completed`.

use std::time::Duration;

use multiproc::{Pool, ReturnWhen, as_completed, wait_results};

/// Sleeps `ms` milliseconds, then returns it: the shorter naps end first.
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn main() {
    multiproc::init();
    let (fast, slow) = (Pool::new(2).unwrap(), Pool::new(2).unwrap());
    let mut handles = vec![slow.apply_async(nap, 600), slow.apply_async(nap, 200)];
    handles.push(fast.apply_async(nap, 400));
    handles.push(fast.apply_async(nap, 10));
    for h in as_completed(handles) {
        println!("done: {} ms", h.get().unwrap());
    }

    let racers = vec![fast.apply_async(nap, 300), slow.apply_async(nap, 50), fast.apply_async(nap, 5_000)];
    let (done, not_done) = wait_results(racers, ReturnWhen::FirstCompleted, Some(Duration::from_secs(10)));
    let first = done.into_iter().next().expect("one finished").get().unwrap();
    println!("first: {first} ms; {} still running", not_done.len());
    for h in &not_done {
        h.cancel(); // stop the losers: their workers are killed and replaced
    }
}
