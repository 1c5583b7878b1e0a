//! A callback runs on the pool's driver thread, the thread that delivers results and
//! finishes the pool's work. What a callback does to its own pool must not hang it:
//! - a wait for another result of the same pool could never be answered: before, `get`
//!   hung for ever, and every other task of the pool with it (with `get_timeout`, the
//!   whole pool stalled for the timeout). Now it fails at once with
//!   `TaskError::WaitInCallback`, and the task goes on. A result already there, or one of
//!   another pool, is waited for as usual. The same holds for an `.await` there (a
//!   `block_on` inside the callback): the future is ready at once with that error;
//! - `join` panicked ("failed to join thread: Resource deadlock avoided"), reported as the
//!   callback's panic; now it is `PoolError::JoinInCallback`;
//! - `terminate`, or dropping the last handle of the pool, panicked the same way; now the
//!   pool stops once the callback returns: unfinished tasks are terminated, the workers
//!   killed and reaped (Python's pool checks for the same case).

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use multiproc::{MapOptions, Pool, PoolError, ReturnWhen, TaskError, TaskOptions, as_completed, wait_results};

mod common;
use common::assert_gone;

multiproc::test_init!();

fn plus_one(x: u64) -> u64 {
    x + 1
}

/// Runs `inside` in the callback of one task of `pool` and returns what it answered.
fn in_callback<T: Send + 'static>(pool: &Arc<Pool>, inside: impl FnOnce(&Pool) -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let p = pool.clone();
    let opts = TaskOptions::new().callback(move |_: &u64| tx.send(inside(&p)).unwrap());
    assert_eq!(pool.apply_async_with(plus_one, 1, opts).get(), Ok(2));
    rx.recv().unwrap()
}

fn is_wait_in_callback<T: std::fmt::Debug>(r: &Result<T, TaskError>) -> bool {
    matches!(r, Err(TaskError::WaitInCallback { task }) if task.ends_with("plus_one"))
}

/// After each case: the pool is whole, and every task started in the callback ran.
fn pool_goes_on(pool: &Pool) {
    assert_eq!(pool.map(plus_one, 0..100u64).unwrap(), (1..101).collect::<Vec<_>>());
}

#[test]
fn get_inside_a_callback_of_the_same_pool_fails_at_once() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let r = in_callback(&pool, |p| p.apply_async(plus_one, 5).get());
    assert!(is_wait_in_callback(&r), "{r:?}");
    let r = in_callback(&pool, |p| p.apply(plus_one, 5));
    assert!(r == Ok(6) || is_wait_in_callback(&r), "apply: {r:?}");
    // Not a timeout: the wait could never have ended.
    let r = in_callback(&pool, |p| p.apply_async(plus_one, 5).get_timeout(Duration::from_secs(3600)));
    assert!(is_wait_in_callback(&r), "{r:?}");
    let ended = in_callback(&pool, |p| {
        let h = p.apply_async(plus_one, 5);
        h.wait();
        (h.ready(), h.wait_timeout(Duration::from_secs(3600)))
    });
    assert_eq!(ended, (false, false), "wait and wait_timeout return at once, the task not ended");
    pool_goes_on(&pool);
}

#[test]
fn maps_inside_a_callback_of_the_same_pool_fail_at_once() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let r = in_callback(&pool, |p| p.map(plus_one, 0..10u64));
    assert!(is_wait_in_callback(&r), "{r:?}");
    let all = in_callback(&pool, |p| p.map_async(plus_one, 0..10u64).get_all());
    assert_eq!(all.len(), 10);
    assert!(all.iter().all(|r| r.is_ok() || is_wait_in_callback(r)), "{all:?}");
    let first = in_callback(&pool, |p| p.imap(plus_one, 0..10u64).next());
    assert!(first.as_ref().is_some_and(is_wait_in_callback), "{first:?}");
    let opts = MapOptions::new();
    let r = in_callback(&pool, move |p| p.map_async_with(plus_one, 0..10u64, &opts).get());
    assert!(is_wait_in_callback(&r), "{r:?}");
    pool_goes_on(&pool);
}

#[test]
fn waits_over_several_handles_inside_a_callback_of_their_pool_return_at_once() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let done = pool.apply_async(plus_one, 9);
    done.wait();
    let outcomes = in_callback(&pool, move |p| {
        let mut handles = vec![done];
        handles.extend((0..3).map(|i| p.apply_async(plus_one, i)));
        as_completed(handles).map(|h| h.get()).collect::<Vec<_>>()
    });
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    assert_eq!(outcomes[0], Ok(10), "the ended handle comes first, with its value");
    assert!(outcomes[1..].iter().all(is_wait_in_callback), "{outcomes:?}");
    let (done, not_done) = in_callback(&pool, |p| {
        let handles: Vec<_> = (0..3).map(|i| p.apply_async(plus_one, i)).collect();
        let (done, not_done) = wait_results(handles, ReturnWhen::AllCompleted, None);
        (done.len(), not_done.len())
    });
    assert_eq!((done, not_done), (0, 3));
    pool_goes_on(&pool);
}

/// Runs `f` to its end on this thread, as a callback that calls `block_on` does.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn awaits_inside_a_callback_of_the_same_pool_are_ready_at_once() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let r = in_callback(&pool, |p| block_on(p.apply_async(plus_one, 5)));
    assert!(is_wait_in_callback(&r), "a handle awaited: {r:?}");
    let r = in_callback(&pool, |p| block_on(p.map_async(plus_one, 0..10u64)));
    assert!(r.is_ok() || is_wait_in_callback(&r), "a map awaited: {r:?}");
    let first = in_callback(&pool, |p| block_on(p.imap(plus_one, 0..10u64).next_async()));
    assert!(first.as_ref().is_some_and(|r| r.is_ok() || is_wait_in_callback(r)), "imap's next awaited: {first:?}");
    let outcomes = in_callback(&pool, |p| {
        let mut done = as_completed((0..3).map(|i| p.apply_async(plus_one, i)).collect::<Vec<_>>());
        let mut outcomes = Vec::new();
        while let Some(h) = block_on(done.next_async()) {
            outcomes.push(h.get());
        }
        outcomes
    });
    assert_eq!(outcomes.len(), 3, "as_completed awaited hands every handle out: {outcomes:?}");
    assert!(outcomes.iter().all(|r| r.is_ok() || is_wait_in_callback(r)), "{outcomes:?}");
    // A handle awaited in a callback is not spent: awaited later elsewhere, it has its value.
    let (tx, rx) = mpsc::channel();
    let r = in_callback(&pool, move |p| {
        let mut h = p.apply_async(plus_one, 7);
        let r = block_on(futures_util::future::poll_fn(|cx| std::pin::Pin::new(&mut h).poll(cx)));
        tx.send(h).unwrap();
        r
    });
    assert!(is_wait_in_callback(&r), "{r:?}");
    assert_eq!(block_on(rx.recv().unwrap()), Ok(8));
    pool_goes_on(&pool);
}

#[test]
fn a_result_already_there_or_of_another_pool_is_waited_for_as_usual() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let done = pool.apply_async(plus_one, 41);
    done.wait();
    assert_eq!(in_callback(&pool, move |_| done.get()), Ok(42));
    let other = Arc::new(Pool::new(1).unwrap());
    let o = other.clone();
    assert_eq!(in_callback(&pool, move |_| o.apply_async(plus_one, 9).get()), Ok(10));
    let o = other.clone();
    assert_eq!(in_callback(&pool, move |_| o.map(plus_one, 0..3u64)), Ok(vec![1, 2, 3]));
    let o = other.clone();
    let from_other = in_callback(&pool, move |_| {
        let handles: Vec<_> = (0..3).map(|i| o.apply_async(plus_one, i)).collect();
        let mut values: Vec<u64> = as_completed(handles).map(|h| h.get().unwrap()).collect();
        values.sort();
        values
    });
    assert_eq!(from_other, [1, 2, 3]);
    pool_goes_on(&pool);
    pool_goes_on(&other);
}

fn nap_forever(_: ()) {
    loop {
        std::thread::park();
    }
}

/// Waits until process `pid` has exited (its pidfd reads as ready), if it still exists.
fn wait_exited(pid: u32) {
    use rustix::event::{PollFd, PollFlags, poll};
    use rustix::process::{Pid, PidfdFlags, pidfd_open};
    let Ok(fd) = pidfd_open(Pid::from_raw(pid as i32).unwrap(), PidfdFlags::empty()) else { return };
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    poll(&mut fds, None).unwrap();
}

#[test]
fn join_inside_a_callback_is_an_error_and_join_outside_works() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let r = in_callback(&pool, |p| {
        p.close();
        p.join()
    });
    assert!(matches!(r, Err(PoolError::JoinInCallback)), "{r:?}");
    let pids = pool.stats().worker_pids;
    pool.join().unwrap();
    assert_gone(&pids);
}

#[test]
fn terminate_inside_a_callback_stops_the_pool_once_it_returns() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let hung = pool.apply_async(nap_forever, ());
    let pids = pool.stats().worker_pids;
    in_callback(&pool, |p| p.terminate());
    assert!(matches!(hung.get(), Err(TaskError::Terminated { .. })));
    for pid in &pids {
        wait_exited(*pid);
    }
    pool.join().unwrap();
    assert_gone(&pids);
}

#[test]
fn the_last_handle_dropped_inside_a_callback_stops_the_pool() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let hung = pool.apply_async(nap_forever, ());
    let pids = pool.stats().worker_pids;
    let (tx, rx) = mpsc::channel();
    let (dropped_tx, dropped_rx) = mpsc::channel();
    let last = pool.clone();
    let opts = TaskOptions::new().callback(move |_: &u64| {
        // The caller's handle is gone first, so this one is the last.
        dropped_rx.recv().unwrap();
        drop(last);
        tx.send(()).unwrap();
    });
    let h = pool.apply_async_with(plus_one, 1, opts);
    drop(pool);
    dropped_tx.send(()).unwrap();
    assert_eq!(h.get(), Ok(2));
    rx.recv().expect("the callback that dropped the pool ended normally");
    assert!(matches!(hung.get(), Err(TaskError::Terminated { .. })));
    for pid in &pids {
        wait_exited(*pid);
    }
}
