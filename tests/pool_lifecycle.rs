//! close / join / terminate / drop, as in Python, and nothing left behind.

use std::time::Duration;

use multiproc::{Pool, PoolError, TaskError};

mod common;
use common::assert_gone;

multiproc::test_init!();

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn echo(x: u64) -> u64 {
    x
}

#[test]
fn join_before_close_is_an_error() {
    let pool = Pool::new(1).unwrap();
    assert!(matches!(pool.join(), Err(PoolError::StillRunning)));
    assert_eq!(pool.apply(echo, 1).unwrap(), 1, "the failed join changed nothing");
}

#[test]
fn close_lets_submitted_work_finish_and_refuses_new_work() {
    let pool = Pool::new(2).unwrap();
    let pids = pool.stats().worker_pids;
    let hs: Vec<_> = (0..10).map(|i| pool.apply_async(nap, i)).collect();
    let m = pool.map_async(echo, 0..10);
    pool.close();
    assert!(matches!(pool.apply(echo, 1), Err(TaskError::Closed { .. })));
    assert!(matches!(pool.map(echo, 0..3), Err(TaskError::Closed { .. })));
    pool.join().unwrap();
    for (i, h) in hs.into_iter().enumerate() {
        assert!(h.ready());
        assert_eq!(h.get().unwrap(), i as u64);
    }
    assert_eq!(m.get().unwrap(), (0..10).collect::<Vec<_>>());
    assert_eq!(pool.stats().workers_alive, 0);
    pool.join().unwrap();
    assert_gone(&pids);
}

#[test]
fn terminate_fails_what_is_pending_and_reaps_every_worker() {
    let pool = Pool::new(2).unwrap();
    let pids = pool.stats().worker_pids;
    let hs: Vec<_> = (0..6).map(|_| pool.apply_async(nap, 60_000)).collect();
    let m = pool.map_async(nap, vec![60_000; 4]);
    pool.terminate();
    assert_gone(&pids);
    for h in hs {
        assert!(matches!(h.get(), Err(TaskError::Terminated { .. })));
    }
    assert!(matches!(m.get(), Err(TaskError::Terminated { .. })));
    assert!(matches!(pool.apply(echo, 1), Err(TaskError::Closed { .. })));
    pool.join().unwrap();
    let s = pool.stats();
    assert_eq!(s.workers_alive, 0);
    assert!(s.tasks_terminated >= 10, "{s:?}");
}

#[test]
fn drop_without_close_terminates_and_reaps() {
    let pool = Pool::new(2).unwrap();
    let pids = pool.stats().worker_pids;
    let h = pool.apply_async(nap, 60_000);
    drop(pool);
    assert_gone(&pids);
    assert!(matches!(h.get(), Err(TaskError::Terminated { .. })));
}

#[test]
fn zero_processes_is_refused() {
    assert!(matches!(Pool::new(0), Err(PoolError::Invalid(_))));
}
