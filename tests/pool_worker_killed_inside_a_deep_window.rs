//! A worker of tiny tasks holds a deep window of them (up to a thousand, sent a stripe at
//! a time). When it is killed in the middle of that window, every item still settles
//! exactly once: the one it was running gets its worker's death (or runs again, with a
//! retry), every other item its own value, whether its result had already come back,
//! was batched in the dead worker, or its task was still queued there.
//!
//! The item that kills its worker is found by its argument; with a retry, a marker file
//! makes it kill only the first worker that runs it.

use std::path::PathBuf;
use std::time::Duration;

use multiproc::{Chunksize, MapOptions, Pool, TaskError};

multiproc::test_init!();

/// Far above anything the tasks need; reached only when an item never settles.
const PATIENCE: Duration = Duration::from_secs(60);

const ITEMS: u64 = 20_000;
const KILLER: u64 = 7_777;

fn double(x: u64) -> u64 {
    2 * x
}

/// Doubles `x`; item `KILLER` kills its worker, the first time only when a marker path
/// is given (the marker says it already did).
fn double_or_die((x, marker): (u64, Option<PathBuf>)) -> u64 {
    if x == KILLER {
        let first = marker.as_ref().is_none_or(|m| std::fs::File::create_new(m).is_ok());
        if first {
            let me = rustix::process::getpid();
            rustix::process::kill_process(me, rustix::process::Signal::KILL).unwrap();
        }
    }
    2 * x
}

/// A pool of two whose workers measured tiny tasks, so each holds a deep window.
fn warm_pool(retries: u32) -> Pool {
    let pool = Pool::builder().processes(2).retries(retries).build().unwrap();
    let out = pool.map_with(double, 0..2_000u64, &MapOptions::new().chunksize(Chunksize::Fixed(1))).unwrap();
    assert_eq!(out.len(), 2_000);
    pool
}

fn items(marker: Option<PathBuf>) -> Vec<(u64, Option<PathBuf>)> {
    (0..ITEMS).map(|i| (i, marker.clone())).collect()
}

#[test]
fn a_worker_killed_mid_window_fails_only_its_running_item() {
    let pool = warm_pool(0);
    let opts = MapOptions::new().chunksize(Chunksize::Fixed(1));
    let out = pool.map_async_with(double_or_die, items(None), &opts);
    assert!(out.wait_timeout(PATIENCE), "the map never settled");
    let all = out.get_all();
    assert_eq!(all.len(), ITEMS as usize);
    for (i, r) in all.into_iter().enumerate() {
        match r {
            Ok(v) => assert_eq!((i as u64 != KILLER, v), (true, 2 * i as u64), "item {i}"),
            Err(TaskError::WorkerDied { attempts, .. }) if i as u64 == KILLER => assert_eq!(attempts.len(), 1),
            Err(e) => panic!("item {i}: {e:?}"),
        }
    }
    let stats = pool.stats();
    assert_eq!(stats.workers_died, 1, "{stats:?}");
    assert_eq!(stats.tasks_worker_died, 1, "only the running item: {stats:?}");
    assert_eq!(stats.tasks_done, 2_000 + ITEMS - 1, "every other item ran once: {stats:?}");
    pool.close();
    pool.join().unwrap();
}

#[test]
fn with_a_retry_every_item_of_the_killed_window_gets_its_value() {
    let marker = std::env::temp_dir().join(format!("multiproc-deep-window-{}", std::process::id()));
    let pool = warm_pool(1);
    let opts = MapOptions::new().chunksize(Chunksize::Fixed(1));
    let out = pool.map_async_with(double_or_die, items(Some(marker.clone())), &opts);
    assert!(out.wait_timeout(PATIENCE), "the map never settled");
    assert_eq!(out.get().unwrap(), (0..ITEMS).map(double).collect::<Vec<_>>());
    let stats = pool.stats();
    assert_eq!((stats.workers_died, stats.tasks_retried), (1, 1), "{stats:?}");
    assert_eq!(stats.tasks_done, 2_000 + ITEMS, "each item ended once: {stats:?}");
    std::fs::remove_file(&marker).unwrap();
    pool.close();
    pool.join().unwrap();
}
