//! Timeouts kill the worker and fail only that task; cancel drops or kills.

use std::time::Duration;

use multiproc::{MapOptions, Pool, TaskError, TaskOptions};

multiproc::test_init!();

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn echo(x: u64) -> u64 {
    x
}

#[test]
fn a_task_past_its_timeout_fails_alone_and_a_fresh_worker_goes_on() {
    let pool = Pool::new(1).unwrap();
    let slow = pool.apply_async_with(nap, 60_000, TaskOptions::new().timeout(Duration::from_millis(200)));
    let after: Vec<_> = (0..5).map(|i| pool.apply_async(echo, i)).collect();
    match slow.get() {
        Err(TaskError::Timeout { task, timeout, pid }) => {
            assert!(task.contains("nap"));
            assert_eq!(timeout, Duration::from_millis(200));
            assert!(pid > 0);
        }
        other => panic!("{other:?}"),
    }
    for (i, h) in after.into_iter().enumerate() {
        assert_eq!(h.get().unwrap(), i as u64);
    }
    let s = pool.stats();
    assert_eq!(s.tasks_timed_out, 1);
    assert_eq!(s.workers_killed_for_timeout, 1);
    assert_eq!(s.workers_died, 0, "a timeout kill is not an unexpected death: {s:?}");
}

#[test]
fn a_pool_wide_timeout_applies_to_maps() {
    let pool = Pool::builder().processes(2).timeout(Duration::from_secs(1)).build().unwrap();
    let all = pool.map_results(nap, [1, 60_000, 2, 3]);
    assert_eq!(all[0], Ok(1));
    assert!(matches!(all[1], Err(TaskError::Timeout { .. })), "{:?}", all[1]);
    assert_eq!(all[2], Ok(2));
    assert_eq!(all[3], Ok(3));
    let opts = MapOptions::new().timeout(Duration::from_secs(600));
    assert_eq!(pool.map_async_with(nap, [1, 2], &opts).get().unwrap(), [1, 2]);
}

#[test]
fn get_timeout_only_stops_waiting() {
    let pool = Pool::new(1).unwrap();
    let h = pool.apply_async(nap, 300);
    assert!(!h.wait_timeout(Duration::from_millis(1)));
    assert!(!h.ready());
    assert_eq!(h.successful(), None);
    h.wait();
    assert!(h.ready());
    assert_eq!(h.get_timeout(Duration::from_millis(1)).unwrap(), 300);
    let h = pool.apply_async(nap, 60_000);
    assert!(matches!(h.get_timeout(Duration::from_millis(20)), Err(TaskError::WaitTimeout { .. })));
    assert_eq!(pool.stats().workers_killed_for_timeout, 0);
}

#[test]
fn cancel_drops_a_pending_task_and_kills_a_running_one() {
    let pool = Pool::new(1).unwrap();
    let running = pool.apply_async(nap, 60_000);
    let queued = pool.apply_async(nap, 60_000);
    let after = pool.apply_async(echo, 7);
    assert!(queued.cancel());
    assert!(matches!(queued.get(), Err(TaskError::Cancelled { .. })));
    assert!(running.cancel());
    assert!(!running.cancel(), "a second cancel finds it ended");
    assert!(matches!(running.get(), Err(TaskError::Cancelled { .. })));
    assert_eq!(after.get().unwrap(), 7);
    let done = pool.apply_async(echo, 1);
    done.wait();
    assert!(!done.cancel(), "an ended task cannot be cancelled");
    assert_eq!(done.get().unwrap(), 1);
}

#[test]
fn cancelling_a_map_fails_what_has_not_ended() {
    let pool = Pool::new(2).unwrap();
    let m = pool.map_async_with(nap, vec![60_000; 6], &MapOptions::new().chunksize(multiproc::Chunksize::Fixed(1)));
    m.cancel();
    let all = m.get_all();
    assert!(all.iter().all(|r| matches!(r, Err(TaskError::Cancelled { .. }))), "{all:?}");
    assert_eq!(pool.apply(echo, 3).unwrap(), 3);
}

#[test]
fn timeouts_too_large_to_represent_mean_no_timeout() {
    let pool = Pool::builder().processes(1).timeout(Duration::MAX).build().unwrap();
    let h = pool.apply_async_with(echo, 5, TaskOptions::new().timeout(Duration::MAX));
    assert!(h.wait_timeout(Duration::MAX));
    assert_eq!(h.get_timeout(Duration::MAX).unwrap(), 5);
    let m = pool.map_async(echo, 0..3);
    assert!(m.wait_timeout(Duration::MAX));
    let mut it = pool.imap(echo, 0..2);
    assert_eq!(it.next_timeout(Duration::MAX).unwrap().unwrap(), 0);
}
