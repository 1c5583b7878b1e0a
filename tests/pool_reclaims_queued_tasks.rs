//! A worker holds a window of tiny tasks; one task that runs long holds the tasks queued
//! behind it hostage while the other worker idles. The driver takes those not yet started
//! back and gives them to the idle worker: each runs once, on one worker, while the long
//! task still runs. Before, they waited for it (here: for ever, as it waits for the test).
//!
//! The long task waits on a connection the test holds (it first sends its pid on it), so
//! it runs exactly as long as the test says; every wait has a generous bound, only so
//! that a regression fails instead of hanging.

use std::time::Duration;

use multiproc::{Bytes, Chunksize, Connection, MapOptions, Pipe, Pool, TaskError};

multiproc::test_init!();

/// Far above anything the tasks need; reached only when tasks are held hostage.
const PATIENCE: Duration = Duration::from_secs(60);

fn double(x: u64) -> u64 {
    2 * x
}

/// Sends its pid, then returns what the test sends it.
fn held_up(conn: Connection<u32>) -> u32 {
    conn.send(std::process::id()).unwrap();
    conn.recv().unwrap()
}

/// The sum of a large argument's bytes (it travels as a memfd).
fn sum(b: Bytes) -> u64 {
    b.iter().map(|&x| x as u64).sum()
}

/// A pool of two whose workers have measured tiny tasks, so each holds a deep window.
fn warm_pool() -> Pool {
    warm(Pool::new(2).unwrap(), 2_000)
}

fn warm(pool: Pool, tasks: u64) -> Pool {
    let out = pool.map_with(double, 0..tasks, &MapOptions::new().chunksize(Chunksize::Fixed(1))).unwrap();
    assert_eq!(out.len(), tasks as usize);
    pool
}

/// Starts the long task; returns the test's end of its connection, its worker's pid and
/// its handle.
fn start_long_task(pool: &Pool) -> (Connection<u32>, u32, multiproc::AsyncResult<u32>) {
    let (mine, theirs) = Pipe::duplex::<u32>().unwrap();
    let long = pool.apply_async(held_up, theirs);
    let pid = mine.recv().unwrap();
    (mine, pid, long)
}

#[test]
fn tiny_tasks_queued_behind_a_long_one_run_on_the_idle_worker() {
    let pool = warm_pool();
    let (release, _, long) = start_long_task(&pool);
    let tiny: Vec<_> = (0..200u64).map(|i| pool.apply_async(double, i)).collect();
    for (i, h) in tiny.into_iter().enumerate() {
        match h.get_timeout(PATIENCE) {
            Ok(v) => assert_eq!(v, 2 * i as u64, "task {i}"),
            Err(e) => panic!("task {i} did not end while the long task ran: {e:?}"),
        }
    }
    assert!(!long.ready(), "the long task still runs");
    let stats = pool.stats();
    assert!(stats.tasks_reclaimed > 0, "some tasks were taken back: {stats:?}");
    release.send(42).unwrap();
    assert_eq!(long.get_timeout(PATIENCE).unwrap(), 42);
    let stats = pool.stats();
    assert_eq!(stats.tasks_done, 2_000 + 200 + 1, "each item ended once: {stats:?}");
    assert_eq!((stats.workers_died, stats.tasks_retried), (0, 0));
}

#[test]
fn chunks_of_a_map_queued_behind_a_long_task_are_taken_back_whole() {
    let pool = warm_pool();
    let (release, _, long) = start_long_task(&pool);
    let opts = MapOptions::new().chunksize(Chunksize::Fixed(10));
    let map = pool.map_async_with(double, 0..3_000u64, &opts);
    assert!(map.wait_timeout(PATIENCE), "the map did not end while the long task ran");
    let out = map.get().unwrap();
    assert_eq!(out, (0..3_000u64).map(double).collect::<Vec<_>>());
    assert!(pool.stats().tasks_reclaimed > 0);
    release.send(7).unwrap();
    assert_eq!(long.get_timeout(PATIENCE).unwrap(), 7);
    assert_eq!(pool.stats().tasks_done, 2_000 + 3_000 + 1);
}

#[test]
fn large_arguments_queued_behind_a_long_task_are_taken_back_and_sent_again() {
    let pool = warm_pool();
    let (release, _, long) = start_long_task(&pool);
    // Each travels as a memfd (256 KiB and up); the one left behind is never refilled.
    let bodies: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 300 << 10]).collect();
    let handles: Vec<_> = bodies.iter().map(|b| pool.apply_async(sum, Bytes::from(b.clone()))).collect();
    for (i, h) in handles.into_iter().enumerate() {
        let want = bodies[i].iter().map(|&x| x as u64).sum::<u64>();
        assert_eq!(h.get_timeout(PATIENCE).unwrap_or_else(|e| panic!("argument {i}: {e:?}")), want);
    }
    release.send(1).unwrap();
    assert_eq!(long.get_timeout(PATIENCE).unwrap(), 1);
}

#[test]
fn a_worker_killed_after_its_queue_was_taken_back_is_charged_only_its_running_task() {
    let pool = warm_pool();
    let (_release, pid, long) = start_long_task(&pool);
    let tiny: Vec<_> = (0..200u64).map(|i| pool.apply_async(double, i)).collect();
    for (i, h) in tiny.into_iter().enumerate() {
        assert_eq!(h.get_timeout(PATIENCE).unwrap_or_else(|e| panic!("task {i}: {e:?}")), 2 * i as u64);
    }
    assert!(pool.stats().tasks_reclaimed > 0);
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), rustix::process::Signal::KILL)
        .unwrap();
    match long.get_timeout(PATIENCE) {
        Err(TaskError::WorkerDied { attempts, .. }) => assert_eq!(attempts.len(), 1),
        other => panic!("the long task: {other:?}"),
    }
    // The pool goes on, and nothing taken back ran again or was blamed.
    assert_eq!(pool.map(double, 0..100u64).unwrap().len(), 100);
    let stats = pool.stats();
    assert_eq!(stats.workers_died, 1, "{stats:?}");
    assert_eq!(stats.tasks_worker_died, 1, "only the long task: {stats:?}");
    assert_eq!(stats.tasks_retried, 0, "{stats:?}");
    assert_eq!(stats.tasks_done, 2_000 + 200 + 100, "each tiny task ended once: {stats:?}");
}

#[test]
fn with_a_task_quota_tasks_taken_back_still_run_once_and_workers_still_retire() {
    // Each worker has run about 300 of its 1 000 tasks: a deep window is left to it.
    let pool = warm(Pool::builder().processes(2).max_tasks_per_child(1_000).build().unwrap(), 600);
    let first_workers = pool.stats().worker_pids;
    let (release, _, long) = start_long_task(&pool);
    let tiny: Vec<_> = (0..200u64).map(|i| pool.apply_async(double, i)).collect();
    for (i, h) in tiny.into_iter().enumerate() {
        assert_eq!(h.get_timeout(PATIENCE).unwrap_or_else(|e| panic!("task {i}: {e:?}")), 2 * i as u64);
    }
    assert!(pool.stats().tasks_reclaimed > 0);
    release.send(5).unwrap();
    assert_eq!(long.get_timeout(PATIENCE).unwrap(), 5);
    // Past every worker's quota: they retire and are replaced, and nothing is lost.
    let out = pool.map_with(double, 0..3_000u64, &MapOptions::new().chunksize(Chunksize::Fixed(1))).unwrap();
    assert_eq!(out, (0..3_000u64).map(double).collect::<Vec<_>>());
    let stats = pool.stats();
    // A task taken back counted against its worker's quota would leave that worker short
    // of it for ever: never retiring, and never sent anything again.
    assert!(stats.recycled_max_tasks >= 2, "{stats:?}");
    assert!(first_workers.iter().all(|p| !stats.worker_pids.contains(p)), "every first worker retired: {stats:?}");
    assert_eq!((stats.workers_died, stats.tasks_retried), (0, 0), "{stats:?}");
    assert_eq!(stats.tasks_done, 600 + 200 + 1 + 3_000, "{stats:?}");
}
