//! A worker tells its pool which item it runs through a page of counters they share
//! (items started, items finished), read once the worker is dead to charge its death to
//! one item. That page is the worker's memory: a task whose C library scribbles over
//! memory can overwrite it and then crash. Counters no honest worker could leave (more
//! than one item running, an item finished before an answered one, more items started
//! than were sent) must not charge the death to an item the worker was not running: an
//! innocent item queued behind the crashing one failed in its place, and the culprit ran
//! again, scribbled again and charged the next innocent. Now such counters make every
//! item held a suspect that runs again alone, and a suspect that dies alone is charged:
//! only the culprit fails.

use std::os::unix::fs::FileExt;

use multiproc::{Chunksize, MapOptions, Pool, TaskError};

multiproc::test_init!();

/// Where this process maps its pool counters (the first two words: items started,
/// items finished).
fn counters_address() -> u64 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps.lines().find(|l| l.contains("multiproc-counters")).expect("a worker maps its counters");
    u64::from_str_radix(line.split('-').next().unwrap(), 16).unwrap()
}

/// Overwrites this worker's counters as a stray write would: `started` many items ahead
/// of `finished`, `finished` one past the running item; then crashes.
fn scribble_and_crash() -> ! {
    let mem = std::fs::OpenOptions::new().read(true).write(true).open("/proc/self/mem").unwrap();
    let at = counters_address();
    let mut started = [0u8; 8];
    mem.read_exact_at(&mut started, at).unwrap();
    let running = u64::from_le_bytes(started);
    mem.write_all_at(&(running + 5).to_le_bytes(), at).unwrap();
    mem.write_all_at(&running.to_le_bytes(), at + 8).unwrap();
    std::process::abort();
}

fn double_unless_culprit(x: u64) -> u64 {
    if x % 16 == 2 {
        scribble_and_crash();
    }
    2 * x
}

#[test]
fn scribbled_counters_charge_the_crash_to_the_culprit_alone() {
    let pool = Pool::new(2).unwrap();
    let outcomes = pool
        .map_async_with(double_unless_culprit, 0..64u64, &MapOptions::new().chunksize(Chunksize::Fixed(8)))
        .get_all();
    assert_eq!(outcomes.len(), 64);
    for (x, outcome) in (0..64u64).zip(&outcomes) {
        if x % 16 == 2 {
            assert!(matches!(outcome, Err(TaskError::WorkerDied { .. })), "item {x}, the culprit: {outcome:?}");
        } else {
            assert_eq!(outcome, &Ok(2 * x), "item {x}, innocent");
        }
    }
    // The pool is whole.
    assert_eq!(pool.map(double_unless_culprit, 0..2u64).unwrap(), vec![0, 2]);
}
