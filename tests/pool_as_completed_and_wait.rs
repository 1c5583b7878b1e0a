//! `as_completed` yields handles in the order their tasks end, across pools, and
//! `wait_results` returns at the first completion, the first failure, all, or its timeout.
//! Each task waits for an `Event` the test sets, so the order is the test's, not a race.

use std::time::Duration;

use multiproc::{Event, Pool, ReturnWhen, TaskError, as_completed, wait_results};

multiproc::test_init!();

/// Waits for `go` (if any), then returns `tag`.
fn wait_for((go, tag): (Option<Event>, u32)) -> u32 {
    if let Some(go) = go {
        go.wait().unwrap();
    }
    tag
}

/// Waits for `go` (if any), then panics.
fn fail_after(go: Option<Event>) -> u32 {
    if let Some(go) = go {
        go.wait().unwrap();
    }
    panic!("failed on purpose")
}

fn events(n: usize) -> Vec<Event> {
    (0..n).map(|_| Event::new().unwrap()).collect()
}

#[test]
fn handles_of_two_pools_come_out_in_completion_order() {
    let (a, b) = (Pool::new(2).unwrap(), Pool::new(2).unwrap());
    let go = events(4);
    let handles: Vec<_> = (0..4u32)
        .map(|i| {
            let pool = if i % 2 == 0 { &a } else { &b };
            pool.apply_async(wait_for, (Some(go[i as usize].clone()), i))
        })
        .collect();
    let mut done = as_completed(handles);
    assert_eq!(done.len(), 4);
    for i in [2u32, 0, 3, 1] {
        go[i as usize].set();
        let h = done.next().expect("a handle is left");
        assert!(h.ready());
        assert_eq!(h.get().unwrap(), i);
    }
    assert!(done.next().is_none());
}

#[test]
fn handles_already_ended_come_out_and_failures_are_yielded_too() {
    let pool = Pool::new(2).unwrap();
    let ok = pool.apply_async(wait_for, (None, 7));
    let bad = pool.apply_async(fail_after, None);
    ok.wait();
    bad.wait();
    let mut outcomes: Vec<_> = as_completed([ok, bad]).map(|h| h.get()).collect();
    outcomes.sort_by_key(|o| o.is_err());
    assert_eq!(outcomes[0].as_ref().unwrap(), &7);
    assert!(matches!(outcomes[1], Err(TaskError::Panicked { .. })));
}

#[test]
fn next_timeout_gives_nothing_then_the_handle_and_the_rest_can_be_taken_back() {
    let pool = Pool::new(2).unwrap();
    let go = events(2);
    let handles: Vec<_> = (0..2u32).map(|i| pool.apply_async(wait_for, (Some(go[i as usize].clone()), i))).collect();
    let mut done = as_completed(handles);
    assert!(done.next_timeout(Duration::from_millis(20)).is_none());
    assert_eq!(done.pending(), 2);
    go[1].set();
    assert_eq!(done.next_timeout(Duration::from_secs(120)).unwrap().get().unwrap(), 1);
    let rest = done.into_pending();
    assert_eq!(rest.len(), 1);
    go[0].set();
    assert_eq!(rest.into_iter().next().unwrap().get().unwrap(), 0);
}

#[test]
fn first_completed_returns_when_one_ends() {
    let pool = Pool::new(3).unwrap();
    let go = events(3);
    let handles: Vec<_> = (0..3u32).map(|i| pool.apply_async(wait_for, (Some(go[i as usize].clone()), i))).collect();
    go[1].set();
    let (done, not_done) = wait_results(handles, ReturnWhen::FirstCompleted, None);
    assert_eq!(done.iter().filter(|h| h.ready()).count(), done.len());
    assert_eq!(done.into_iter().map(|h| h.get().unwrap()).collect::<Vec<_>>(), [1]);
    assert_eq!(not_done.len(), 2);
    go[0].set();
    go[2].set();
    let values: Vec<u32> = not_done.into_iter().map(|h| h.get().unwrap()).collect();
    assert_eq!(values, [0, 2], "not_done keeps the order given");
}

#[test]
fn first_exception_goes_past_successes_and_returns_at_the_failure() {
    let pool = Pool::new(4).unwrap();
    let go = events(4);
    let fine = pool.apply_async(wait_for, (Some(go[0].clone()), 0));
    let failing = pool.apply_async(fail_after, Some(go[1].clone()));
    let blocked = pool.apply_async(wait_for, (Some(go[2].clone()), 2));
    go[0].set();
    fine.wait();
    go[1].set();
    let (done, not_done) = wait_results([fine, failing, blocked], ReturnWhen::FirstException, None);
    assert_eq!(done.len(), 2);
    assert_eq!(done.iter().filter(|h| h.successful() == Some(false)).count(), 1);
    assert_eq!(not_done.len(), 1);
    go[2].set();
    assert_eq!(not_done.into_iter().next().unwrap().get().unwrap(), 2);
}

#[test]
fn first_exception_without_a_failure_waits_for_all() {
    let pool = Pool::new(2).unwrap();
    let handles: Vec<_> = (0..4u32).map(|i| pool.apply_async(wait_for, (None, i))).collect();
    let (done, not_done) = wait_results(handles, ReturnWhen::FirstException, None);
    assert!(not_done.is_empty());
    let mut values: Vec<u32> = done.into_iter().map(|h| h.get().unwrap()).collect();
    values.sort();
    assert_eq!(values, [0, 1, 2, 3]);
}

#[test]
fn a_timeout_returns_what_is_done() {
    let pool = Pool::new(2).unwrap();
    let never = Event::new().unwrap();
    let quick = pool.apply_async(wait_for, (None, 1));
    let stuck = pool.apply_async(wait_for, (Some(never.clone()), 2));
    quick.wait();
    let (done, not_done) = wait_results([quick, stuck], ReturnWhen::AllCompleted, Some(Duration::from_millis(20)));
    assert_eq!(done.into_iter().map(|h| h.get().unwrap()).collect::<Vec<_>>(), [1]);
    assert_eq!(not_done.len(), 1);
    // The handle given back is an ordinary one: it can be cancelled, and its worker freed.
    let stuck = not_done.into_iter().next().unwrap();
    assert!(stuck.cancel());
    assert!(matches!(stuck.get(), Err(TaskError::Cancelled { .. })));
    assert_eq!(pool.apply(wait_for, (None, 3)).unwrap(), 3);
}

#[test]
fn nothing_to_wait_for_returns_at_once() {
    let (done, not_done) = wait_results(Vec::<multiproc::AsyncResult<u32>>::new(), ReturnWhen::AllCompleted, None);
    assert!(done.is_empty() && not_done.is_empty());
    assert!(as_completed(Vec::<multiproc::AsyncResult<u32>>::new()).next().is_none());
}
