//! `abort_on_drop` on `AsyncResult`, `MapResult` and `IMapIter`: dropping such a handle
//! cancels its task(s). A running task's worker is killed and replaced (the pool's only
//! worker is free for the next task); a queued task never runs; a handle whose task ended,
//! or one without the flag, cancels nothing.

use std::time::Duration;

use multiproc::{Event, Pool, ReturnWhen, wait_results};

multiproc::test_init!();

/// Says it started, then waits for `go`.
fn started_then_wait((started, go): (Event, Event)) -> u32 {
    started.set();
    go.wait().unwrap();
    1
}

/// Marks `ran`.
fn mark(ran: Event) -> u32 {
    ran.set();
    2
}

fn double(x: u64) -> u64 {
    x * 2
}

fn events() -> (Event, Event) {
    (Event::new().unwrap(), Event::new().unwrap())
}

#[test]
fn dropping_a_running_task_frees_its_worker() {
    let pool = Pool::new(1).unwrap();
    let (started, never) = events();
    let r = pool.apply_async(started_then_wait, (started.clone(), never)).abort_on_drop();
    started.wait().unwrap();
    drop(r);
    // The one worker was blocked for good: only its replacement can run this.
    assert_eq!(pool.apply_async(double, 21).get_timeout(Duration::from_secs(120)).unwrap(), 42);
    let s = pool.stats();
    assert_eq!((s.tasks_cancelled, s.workers_killed_for_cancel), (1, 1), "{s:?}");
}

#[test]
fn a_dropped_queued_task_never_runs() {
    let pool = Pool::new(1).unwrap();
    let (started, go) = events();
    let blocker = pool.apply_async(started_then_wait, (started.clone(), go.clone()));
    started.wait().unwrap();
    let ran = Event::new().unwrap();
    drop(pool.apply_async(mark, ran.clone()).abort_on_drop());
    go.set();
    assert_eq!(blocker.get().unwrap(), 1);
    // One worker, tasks in order: the dropped one would have run before this one.
    assert_eq!(pool.apply(double, 1).unwrap(), 2);
    assert!(!ran.is_set());
}

#[test]
fn dropping_without_the_flag_or_after_the_end_cancels_nothing() {
    let pool = Pool::new(1).unwrap();
    let (started, go) = events();
    drop(pool.apply_async(started_then_wait, (started.clone(), go.clone())));
    started.wait().unwrap();
    let done = pool.apply_async(double, 3).abort_on_drop();
    go.set();
    assert_eq!(done.get().unwrap(), 6);
    let ended = pool.apply_async(double, 4).abort_on_drop();
    ended.wait();
    drop(ended);
    let s = pool.stats();
    assert_eq!((s.tasks_cancelled, s.workers_killed_for_cancel), (0, 0), "{s:?}");
}

#[test]
fn the_handles_wait_results_gives_back_keep_the_flag() {
    let pool = Pool::new(1).unwrap();
    let (started, never) = events();
    let stuck = pool.apply_async(started_then_wait, (started.clone(), never)).abort_on_drop();
    let ran = Event::new().unwrap();
    let queued = pool.apply_async(mark, ran.clone()).abort_on_drop();
    started.wait().unwrap();
    let (done, not_done) = wait_results([stuck, queued], ReturnWhen::FirstCompleted, Some(Duration::from_millis(20)));
    assert_eq!((done.len(), not_done.len()), (0, 2));
    drop(not_done);
    assert_eq!(pool.apply_async(double, 21).get_timeout(Duration::from_secs(120)).unwrap(), 42);
    assert!(!ran.is_set());
}

#[test]
fn a_get_timeout_that_gives_up_cancels_the_task() {
    let pool = Pool::new(1).unwrap();
    let (started, never) = events();
    let r = pool.apply_async(started_then_wait, (started.clone(), never)).abort_on_drop();
    started.wait().unwrap();
    assert!(matches!(r.get_timeout(Duration::from_millis(20)), Err(multiproc::TaskError::WaitTimeout { .. })));
    assert_eq!(pool.apply_async(double, 21).get_timeout(Duration::from_secs(120)).unwrap(), 42);
}

#[test]
fn dropping_an_unfinished_map_frees_its_worker() {
    let pool = Pool::new(1).unwrap();
    let (started, never) = events();
    let items = vec![(started.clone(), never.clone()), (Event::new().unwrap(), never)];
    let m = pool.map_async(started_then_wait, items).abort_on_drop();
    started.wait().unwrap();
    drop(m);
    assert_eq!(pool.apply_async(double, 21).get_timeout(Duration::from_secs(120)).unwrap(), 42);
    assert_eq!(pool.stats().workers_killed_for_cancel, 1);
}

#[test]
fn dropping_an_imap_before_its_end_frees_its_worker() {
    let pool = Pool::new(1).unwrap();
    let (started, never) = events();
    let endless = std::iter::repeat((started.clone(), never));
    let mut it = pool.imap(started_then_wait, endless).abort_on_drop();
    let waited = it.next_timeout(Duration::from_millis(1));
    assert!(matches!(waited, Some(Err(multiproc::TaskError::WaitTimeout { .. }))), "{waited:?}");
    started.wait().unwrap();
    drop(it);
    assert_eq!(pool.apply_async(double, 21).get_timeout(Duration::from_secs(120)).unwrap(), 42);
    assert_eq!(pool.stats().workers_killed_for_cancel, 1);
}
