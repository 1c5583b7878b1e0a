//! Abort-on-drop: a handle made with `abort_on_drop()` cancels its task when it is dropped,
//! so the loser of a race (here `wait_results` with `FirstCompleted`; in async code the
//! other branch of a `select!`) does not keep a worker busy.
//!
//! Run with `cargo run --example async_abort_on_drop`.

use std::time::Duration;

use multiproc::{Pool, ReturnWhen, wait_results};

/// Answers `n` at once if it is small; a large one never ends (a stand-in for a search
/// that may not terminate).
fn search(n: u64) -> u64 {
    if n > 1_000 {
        loop {
            std::thread::park();
        }
    }
    n
}

fn main() {
    multiproc::init();
    let pool = Pool::new(2).unwrap();
    let racers = vec![pool.apply_async(search, 42).abort_on_drop(), pool.apply_async(search, u64::MAX).abort_on_drop()];
    let (done, losers) = wait_results(racers, ReturnWhen::FirstCompleted, None);
    println!("winner: {}", done.into_iter().next().expect("one ended").get().unwrap());
    drop(losers); // cancels the endless search: its worker is killed and replaced
    let s = pool.stats();
    println!("cancelled so far: {} (the kill may still be under way)", s.tasks_cancelled);

    // A bounded wait that gives up and lets the handle go cancels the task.
    let slow = pool.apply_async(search, u64::MAX).abort_on_drop();
    if !slow.wait_timeout(Duration::from_millis(100)) {
        println!("gave up after 100 ms: dropping the handle cancels the task");
    }
    drop(slow);
    println!("the pool goes on: {}", pool.apply(search, 49).unwrap());
    println!("workers killed for a cancel so far: {}", pool.stats().workers_killed_for_cancel);
}
