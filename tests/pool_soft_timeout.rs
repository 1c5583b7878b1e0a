//! The soft time limit: a task learns its deadlines through `multiproc::task`, is told to
//! stop at the soft one (`task::cancelled`) and may return cleanly, and is killed at the
//! hard one if it does not. Through both paths a task takes (a synchronous `apply` on an
//! idle worker, and the driver's `apply_async`/`map`), and for `isolated` calls.

use std::time::{Duration, Instant};

use multiproc::{Event, Pool, PoolError, TaskError, task};

multiproc::test_init!();

/// Works until told to stop, then reports how many steps it made.
fn until_cancelled(_: ()) -> u64 {
    let mut steps = 0;
    while !task::cancelled() {
        steps += 1;
        std::thread::yield_now();
    }
    steps
}

/// Ignores the soft limit: waits for an event nobody sets.
fn stubborn(never: Event) -> u64 {
    never.wait().unwrap();
    0
}

/// What the task knows of its limits: (soft, hard) as durations from now, in ms.
fn limits(_: u32) -> (Option<u64>, Option<u64>, bool) {
    let now = Instant::now();
    let left = |d: Option<Instant>| d.map(|d| d.saturating_duration_since(now).as_millis() as u64);
    (left(task::soft_deadline()), left(task::deadline()), task::cancelled())
}

fn pool(soft_ms: u64, hard_ms: u64) -> Pool {
    Pool::builder()
        .processes(1)
        .soft_timeout(Duration::from_millis(soft_ms))
        .timeout(Duration::from_millis(hard_ms))
        .build()
        .unwrap()
}

#[test]
fn a_task_told_to_stop_returns_its_value_before_the_kill() {
    let pool = pool(30, 120_000);
    // `apply` goes through the express lane, `apply_async` through the driver.
    assert!(pool.apply(until_cancelled, ()).unwrap() > 0);
    assert!(pool.apply_async(until_cancelled, ()).get().unwrap() > 0);
    assert_eq!(pool.stats().workers_killed_for_timeout, 0);
}

#[test]
fn a_task_that_ignores_the_soft_limit_is_killed_at_the_hard_one() {
    let pool = pool(10, 200);
    let never = Event::new().unwrap();
    let r = pool.apply_async(stubborn, never.clone()).get();
    assert!(matches!(r, Err(TaskError::Timeout { .. })), "{r:?}");
    let r = pool.apply(stubborn, never);
    assert!(matches!(r, Err(TaskError::Timeout { .. })), "{r:?}");
    // The pool goes on, and the next task has its limits afresh.
    assert!(pool.apply(until_cancelled, ()).unwrap() > 0);
}

#[test]
fn every_task_of_a_map_sees_its_own_deadlines() {
    let pool = pool(60_000, 120_000);
    for (soft, hard, cancelled) in pool.map(limits, 0..20).unwrap() {
        let (soft, hard) = (soft.unwrap(), hard.unwrap());
        assert!(soft <= 60_000 && hard <= 120_000 && soft < hard, "{soft} {hard}");
        assert!(!cancelled);
    }
    assert!(!pool.apply(limits, 0).unwrap().2);
}

#[test]
fn without_limits_a_task_has_no_deadline_and_neither_has_the_parent() {
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.apply(limits, 0).unwrap(), (None, None, false));
    // A timeout alone: a deadline, no soft one.
    let timed = Pool::builder().processes(1).timeout(Duration::from_secs(120)).build().unwrap();
    let (soft, hard, _) = timed.apply_async(limits, 0).get().unwrap();
    assert!(soft.is_none() && hard.is_some_and(|h| h <= 120_000));
    assert_eq!(limits(0), (None, None, false));
    assert!(task::remaining().is_none());
}

#[test]
fn a_soft_timeout_not_shorter_than_the_timeout_is_refused() {
    let r = Pool::builder().soft_timeout(Duration::from_secs(5)).timeout(Duration::from_secs(5)).build();
    match r {
        Err(PoolError::Invalid(m)) => assert!(m.contains("soft_timeout") && m.contains("timeout"), "{m}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn an_isolated_call_is_told_to_stop_too() {
    let r = multiproc::Isolated::new(until_cancelled, ())
        .soft_timeout(Duration::from_millis(20))
        .timeout(Duration::from_secs(120))
        .call();
    assert!(r.unwrap() > 0);
}
