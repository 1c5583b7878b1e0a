//! A worker sends the results of tiny tasks in batches. A batch must not wait for the
//! task that runs after it: when that task runs long, or for ever, the tiny tasks'
//! results still reach their callers at once; and when the long task's worker is killed
//! (its time limit), the tiny tasks it had finished are not lost with it and run again
//! elsewhere (a task runs once).
//!
//! Before, a result that ended within 200 µs of the worker's last send, with the long
//! task already queued behind it, waited in the worker for the long task to end: for
//! ever without a time limit, and with one it died with the worker and its task ran
//! again on the replacement.
//!
//! One worker, warmed with tiny tasks so that it holds a deep window; 200 tiny tasks,
//! then the long one, which reports its pid and waits for the test.

use std::time::Duration;

use multiproc::{Chunksize, Connection, MapOptions, Pipe, Pool, TaskError};

multiproc::test_init!();

/// Far above anything the tasks need; reached only when results are held back.
const PATIENCE: Duration = Duration::from_secs(60);

/// The long task's time limit, in the second test.
const LIMIT: Duration = Duration::from_secs(3);

fn double(x: u64) -> u64 {
    2 * x
}

/// Which process ran it.
fn pid_of_worker(_: u64) -> u32 {
    std::process::id()
}

/// Sends its pid, then returns what the test sends it (waits for ever without).
fn held_up(conn: Connection<u32>) -> u32 {
    conn.send(std::process::id()).unwrap();
    conn.recv().unwrap_or(0)
}

fn warm_pool(pool: Pool) -> Pool {
    let out = pool.map_with(double, 0..2_000u64, &MapOptions::new().chunksize(Chunksize::Fixed(1))).unwrap();
    assert_eq!(out.len(), 2_000);
    pool
}

#[test]
fn tiny_results_reach_their_callers_while_the_next_task_runs_on() {
    let pool = warm_pool(Pool::new(1).unwrap());
    let tiny: Vec<_> = (0..200u64).map(|i| pool.apply_async(double, i)).collect();
    let (release, theirs) = Pipe::duplex::<u32>().unwrap();
    let long = pool.apply_async(held_up, theirs);
    release.recv().expect("the long task runs");
    for (i, h) in tiny.into_iter().enumerate() {
        match h.get_timeout(PATIENCE) {
            Ok(v) => assert_eq!(v, 2 * i as u64, "task {i}"),
            Err(e) => panic!("task {i}'s result waited for the long task: {e:?}"),
        }
    }
    assert!(!long.ready(), "the long task still runs");
    release.send(42).unwrap();
    assert_eq!(long.get_timeout(PATIENCE).unwrap(), 42);
    let stats = pool.stats();
    assert_eq!(stats.tasks_done, 2_000 + 200 + 1, "each item ended once: {stats:?}");
    assert_eq!(stats.workers_died, 0);
}

#[test]
fn tiny_tasks_finished_before_a_killed_one_are_not_run_again() {
    let pool = warm_pool(Pool::builder().processes(1).timeout(LIMIT).build().unwrap());
    let tiny: Vec<_> = (0..200u64).map(|i| pool.apply_async(pid_of_worker, i)).collect();
    let (started, theirs) = Pipe::duplex::<u32>().unwrap();
    let long = pool.apply_async(held_up, theirs);
    let worker = started.recv().expect("the long task runs");
    for (i, h) in tiny.into_iter().enumerate() {
        let ran_on = h.get_timeout(PATIENCE).unwrap_or_else(|e| panic!("task {i}: {e:?}"));
        assert_eq!(ran_on, worker, "task {i} ran again on the replacement: its first result was lost");
    }
    // The long task never hears back: its time limit kills its worker.
    let outcome = long.get_timeout(PATIENCE);
    assert!(matches!(outcome, Err(TaskError::Timeout { .. })), "{outcome:?}");
    drop(started);
    let stats = pool.stats();
    assert_eq!(stats.tasks_timed_out, 1, "{stats:?}");
    assert_eq!(stats.tasks_done, 2_000 + 200, "{stats:?}");
}

/// A task that returns a descriptor (here a connection with a value waiting in it).
fn connection_holding(x: u64) -> Connection<u64> {
    let (mine, theirs) = Pipe::duplex::<u64>().unwrap();
    mine.send(x).unwrap();
    theirs
}

/// Results that carry descriptors, handed over and sent by the flusher while the next
/// task runs: each arrives with its own descriptor, in order.
#[test]
fn results_with_descriptors_are_sent_whole_while_the_next_task_runs_on() {
    let pool = warm_pool(Pool::new(1).unwrap());
    let conns: Vec<_> = (0..100u64).map(|i| pool.apply_async(connection_holding, i)).collect();
    let (release, theirs) = Pipe::duplex::<u32>().unwrap();
    let long = pool.apply_async(held_up, theirs);
    release.recv().expect("the long task runs");
    for (i, h) in conns.into_iter().enumerate() {
        let conn = h.get_timeout(PATIENCE).unwrap_or_else(|e| panic!("task {i}: {e:?}"));
        assert_eq!(conn.recv().unwrap(), i as u64, "task {i}'s descriptor is its own");
    }
    assert!(!long.ready(), "the long task still runs");
    release.send(3).unwrap();
    assert_eq!(long.get_timeout(PATIENCE).unwrap(), 3);
    assert_eq!(pool.stats().workers_died, 0);
}
