//! Ports of CPython's synchronization tests.
//!
//! Provenance: `Lib/test/_test_multiprocessing.py` of CPython (the `main` branch at
//! commit 00811485ee5f, the 3.15 development line), classes `_TestLock`,
//! `_TestSemaphore`, `_TestCondition`, `_TestEvent` and `_TestBarrier` (the latter
//! adapted there from `Lib/test/lock_tests.py`). Each test names the method it ports.
//! Python's "processes and threads" mixes are kept where they matter (a condition with a
//! waiting process and a waiting thread); Python's `_DummyList` counters are `Value`s.
//!
//! Differences, and cases not ported:
//! - Locks are released by dropping their guard, so "release an unlocked lock raises"
//!   cannot be written; a second `acquire` of a `Lock` by its holder is reported
//!   (`WouldDeadlock`) where Python would block for ever.
//! - `test_repr_lock`, `test_repr_rlock`, `_TestEvent.test_repr`: Python's `repr` strings.
//! - Timing assertions (`assertTimingAlmostEqual`, off by default in CPython,
//!   `test_waitfor_timeout`'s elapsed time) are left out: no wall-clock assertions here.
//! - `test_wait_result`'s `KeyboardInterrupt` part: Rust has no such exception.
//! - `_TestBarrier.test_action`: the action is a `fn()` (it reaches other processes by its
//!   offset in the binary), so it counts through a `Value` a static points to.
//! - `_TestBarrier.test_default_timeout`, `test_timeout`: their "one party is late by a
//!   second" is timing; kept as "a party that never comes breaks a `wait_timeout`" (and
//!   a `wait` under the barrier's default timeout).

use std::time::Duration;

use multiproc::{Barrier, BoundedSemaphore, Condition, Event, Lock, LockError, Process, Queue, RLock, Semaphore};
use multiproc::{SyncError, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

multiproc::test_init!();

const PATIENCE: Duration = Duration::from_secs(60);

fn started<A: Serialize + DeserializeOwned + Send + 'static>(f: fn(A), arg: A) -> Process {
    let mut p = Process::new(f, arg);
    p.start().unwrap();
    p
}

fn joined_ok(p: &Process) {
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0), "a child failed");
}

/// `_TestLock.test_lock`, `_TestLock.test_lock_context`
#[test]
fn lock() {
    let lock = Lock::new().unwrap();
    assert!(!lock.locked());
    let held = lock.acquire().unwrap();
    assert!(lock.locked());
    assert!(matches!(lock.try_acquire(), Err(LockError::WouldDeadlock | LockError::TimedOut)));
    drop(held);
    assert!(!lock.locked());
    assert!(lock.try_acquire().is_ok());
}

fn hold_lock((lock, held, done): (Lock, Event, Event)) {
    let _g = lock.acquire().unwrap();
    held.set();
    done.wait().unwrap();
}

fn hold_rlock((lock, held, done): (RLock, Event, Event)) {
    let _a = lock.acquire().unwrap();
    let _b = lock.acquire().unwrap();
    held.set();
    done.wait().unwrap();
}

/// `_TestLock.test_lock_locked_2processes`
#[test]
fn lock_held_by_another_process() {
    let (lock, held, done) = (Lock::new().unwrap(), Event::new().unwrap(), Event::new().unwrap());
    let p = started(hold_lock, (lock.clone(), held.clone(), done.clone()));
    held.wait().unwrap();
    assert!(lock.locked());
    assert!(matches!(lock.try_acquire(), Err(LockError::TimedOut)));
    assert!(matches!(lock.acquire_timeout(Duration::from_millis(50)), Err(LockError::TimedOut)));
    done.set();
    joined_ok(&p);
    assert!(!lock.locked());
    assert!(lock.acquire_timeout(PATIENCE).is_ok());
}

/// `_TestLock.test_rlock`, `_TestLock.test_rlock_context`
#[test]
fn rlock() {
    let lock = RLock::new().unwrap();
    let a = lock.acquire().unwrap();
    let b = lock.acquire().unwrap();
    let c = lock.acquire().unwrap();
    drop(c);
    drop(b);
    drop(a);
    assert!(lock.try_acquire().is_ok());
}

/// `_TestLock.test_rlock_locked_2processes`
#[test]
fn rlock_held_by_another_process() {
    let (lock, held, done) = (RLock::new().unwrap(), Event::new().unwrap(), Event::new().unwrap());
    let p = started(hold_rlock, (lock.clone(), held.clone(), done.clone()));
    held.wait().unwrap();
    assert!(lock.locked());
    assert!(matches!(lock.try_acquire(), Err(LockError::TimedOut)));
    done.set();
    joined_ok(&p);
    assert!(!lock.locked());
    assert!(lock.acquire_timeout(PATIENCE).is_ok());
}

/// `_TestSemaphore._test_semaphore`, on a semaphore of 2.
fn two_units(value: impl Fn() -> u32, try_acquire: impl Fn() -> bool, release: impl Fn()) {
    assert_eq!(value(), 2);
    assert!(try_acquire());
    assert_eq!(value(), 1);
    assert!(try_acquire());
    assert_eq!(value(), 0);
    assert!(!try_acquire());
    assert_eq!(value(), 0);
    release();
    assert_eq!(value(), 1);
    release();
    assert_eq!(value(), 2);
}

/// `_TestSemaphore.test_semaphore`
#[test]
fn semaphore() {
    let sem = Semaphore::new(2).unwrap();
    two_units(|| sem.value(), || sem.try_acquire(), || sem.release().unwrap());
    sem.release().unwrap();
    assert_eq!(sem.value(), 3);
    sem.release().unwrap();
    assert_eq!(sem.value(), 4);
}

/// `_TestSemaphore.test_bounded_semaphore` (with the check CPython comments out: a
/// release past the bound fails and changes nothing).
#[test]
fn bounded_semaphore() {
    let sem = BoundedSemaphore::new(2).unwrap();
    two_units(|| sem.value(), || sem.try_acquire(), || sem.release().unwrap());
    assert!(matches!(sem.release(), Err(SyncError::OverReleased { bound: 2 })));
    assert_eq!(sem.value(), 2);
}

/// `_TestSemaphore.test_timeout`
#[test]
fn semaphore_timeout() {
    let sem = Semaphore::new(0).unwrap();
    assert!(!sem.try_acquire());
    assert!(matches!(sem.acquire_timeout(Duration::ZERO), Err(SyncError::TimedOut)));
    assert!(matches!(sem.acquire_timeout(Duration::from_millis(100)), Err(SyncError::TimedOut)));
}

/// CPython's `_TestCondition.f`: note "sleeping", wait (at most `timeout`), note "woken".
fn sleep_on((cond, sleeping, woken, timeout): (Condition, Semaphore, Semaphore, Option<Duration>)) {
    let mut g = cond.acquire().unwrap();
    sleeping.release().unwrap();
    match timeout {
        Some(t) => drop(g.wait_timeout(t).unwrap()),
        None => g.wait().unwrap(),
    }
    woken.release().unwrap();
}

/// A process and a thread waiting on `cond`; returns them to be joined.
fn waiters(
    n: usize,
    cond: &Condition,
    sleeping: &Semaphore,
    woken: &Semaphore,
    timeout: Option<Duration>,
) -> (Vec<Process>, Vec<std::thread::JoinHandle<()>>) {
    let arg = || (cond.clone(), sleeping.clone(), woken.clone(), timeout);
    let procs = (0..n).map(|_| started(sleep_on, arg())).collect();
    let threads = (0..n)
        .map(|_| {
            let a = arg();
            std::thread::spawn(move || sleep_on(a))
        })
        .collect();
    (procs, threads)
}

fn join_all((procs, threads): (Vec<Process>, Vec<std::thread::JoinHandle<()>>)) {
    procs.iter().for_each(joined_ok);
    threads.into_iter().for_each(|t| t.join().unwrap());
}

fn take(sem: &Semaphore, n: usize) {
    for _ in 0..n {
        sem.acquire_timeout(PATIENCE).unwrap();
    }
}

fn sems() -> (Condition, Semaphore, Semaphore) {
    (Condition::new().unwrap(), Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap())
}

/// `_TestCondition.test_notify`
#[test]
fn condition_notify() {
    let (cond, sleeping, woken) = sems();
    let w = waiters(1, &cond, &sleeping, &woken, None);
    take(&sleeping, 2);
    assert_eq!(woken.value(), 0);
    cond.acquire().unwrap().notify(1);
    take(&woken, 1);
    cond.acquire().unwrap().notify(1);
    take(&woken, 1);
    join_all(w);
    assert_eq!(woken.value(), 0);
}

/// `_TestCondition.test_notify_all`
#[test]
fn condition_notify_all() {
    let (cond, sleeping, woken) = sems();
    let w = waiters(3, &cond, &sleeping, &woken, Some(Duration::from_millis(100)));
    take(&sleeping, 6);
    // They all time out.
    take(&woken, 6);
    join_all(w);
    let w = waiters(3, &cond, &sleeping, &woken, None);
    take(&sleeping, 6);
    assert_eq!(woken.value(), 0);
    cond.acquire().unwrap().notify_all();
    take(&woken, 6);
    join_all(w);
    assert_eq!(woken.value(), 0);
}

/// `_TestCondition.test_notify_n`
#[test]
fn condition_notify_n() {
    let (cond, sleeping, woken) = sems();
    let w = waiters(3, &cond, &sleeping, &woken, None);
    take(&sleeping, 6);
    cond.acquire().unwrap().notify(2);
    take(&woken, 2);
    cond.acquire().unwrap().notify(4);
    take(&woken, 4);
    // Nobody is left to wake.
    cond.acquire().unwrap().notify(3);
    join_all(w);
    assert_eq!(woken.value(), 0);
}

/// `_TestCondition.test_timeout`
#[test]
fn condition_wait_timeout() {
    let cond = Condition::new().unwrap();
    let mut g = cond.acquire().unwrap();
    assert!(!g.wait_timeout(Duration::from_millis(100)).unwrap());
}

fn wait_for_four((cond, state): (Condition, Value<i32>)) {
    let mut g = cond.acquire().unwrap();
    state.set(0).unwrap();
    g.notify(1);
    assert!(g.wait_for(|| state.get().unwrap() == 4, None).unwrap());
    assert_eq!(state.get().unwrap(), 4);
}

/// `_TestCondition.test_waitfor`
#[test]
fn condition_wait_for() {
    let (cond, state) = (Condition::new().unwrap(), Value::new(-1i32).unwrap());
    let p = started(wait_for_four, (cond.clone(), state.clone()));
    {
        let mut g = cond.acquire().unwrap();
        assert!(g.wait_for(|| state.get().unwrap() == 0, None).unwrap());
        assert_eq!(state.get().unwrap(), 0);
    }
    for _ in 0..4 {
        let mut g = cond.acquire().unwrap();
        state.set(state.get().unwrap() + 1).unwrap();
        g.notify(1);
    }
    joined_ok(&p);
}

fn wait_for_four_briefly((cond, state, ready): (Condition, Value<i32>, Semaphore)) {
    ready.release().unwrap();
    let mut g = cond.acquire().unwrap();
    assert!(!g.wait_for(|| state.get().unwrap() == 4, Some(Duration::from_millis(100))).unwrap());
}

/// `_TestCondition.test_waitfor_timeout`: the predicate never holds, the wait ends.
#[test]
fn condition_wait_for_timeout() {
    let (cond, state, ready) = (Condition::new().unwrap(), Value::new(0i32).unwrap(), Semaphore::new(0).unwrap());
    let p = started(wait_for_four_briefly, (cond.clone(), state.clone(), ready.clone()));
    ready.acquire_timeout(PATIENCE).unwrap();
    for _ in 0..3 {
        let mut g = cond.acquire().unwrap();
        state.set(state.get().unwrap() + 1).unwrap();
        g.notify(1);
    }
    joined_ok(&p);
}

fn notify_once(cond: Condition) {
    cond.acquire().unwrap().notify(1);
}

/// `_TestCondition.test_wait_result`
#[test]
fn condition_wait_result() {
    let cond = Condition::new().unwrap();
    let mut g = cond.acquire().unwrap();
    assert!(!g.wait_timeout(Duration::ZERO).unwrap());
    assert!(!g.wait_timeout(Duration::from_millis(100)).unwrap());
    let p = started(notify_once, cond.clone());
    assert!(g.wait_timeout(PATIENCE).unwrap());
    drop(g);
    joined_ok(&p);
}

fn set_event(e: Event) {
    e.set();
}

/// `_TestEvent.test_event`
#[test]
fn event() {
    let e = Event::new().unwrap();
    assert!(!e.is_set());
    assert!(!e.wait_timeout(Duration::ZERO).unwrap());
    assert!(!e.wait_timeout(Duration::from_millis(100)).unwrap());
    e.set();
    assert!(e.is_set());
    e.wait().unwrap();
    assert!(e.wait_timeout(Duration::from_millis(100)).unwrap());
    e.clear();
    assert!(!e.is_set());
    let p = started(set_event, e.clone());
    e.wait().unwrap();
    joined_ok(&p);
}

const N: u32 = 5;

/// Runs `f(arg)` in `N - 1` processes and here (CPython's `Bunch` plus the caller).
fn run_parties<A: Serialize + DeserializeOwned + Send + Clone + 'static>(f: fn(A), arg: A) {
    let procs: Vec<Process> = (0..N - 1).map(|_| started(f, arg.clone())).collect();
    f(arg);
    procs.iter().for_each(joined_ok);
}

fn bump(v: &Value<u32>) {
    *v.lock().unwrap() += 1;
}

fn multipass((barrier, before, after, passes): (Barrier, Value<u32>, Value<u32>, u32)) {
    for i in 0..passes {
        bump(&before);
        assert_eq!(after.get().unwrap(), i * N);
        barrier.wait().unwrap();
        bump(&after);
        assert_eq!(before.get().unwrap(), (i + 1) * N);
        barrier.wait().unwrap();
    }
    assert_eq!(barrier.n_waiting(), 0);
    assert!(!barrier.broken());
}

/// `_TestBarrier.test_barrier`, `_TestBarrier.test_barrier_10`: parties pass in lockstep.
#[test]
fn barrier_lockstep() {
    for passes in [1, 10] {
        let b = Barrier::new(N).unwrap();
        run_parties(multipass, (b, Value::new(0u32).unwrap(), Value::new(0u32).unwrap(), passes));
    }
}

fn wait_and_report((barrier, q): (Barrier, Queue<u32>)) {
    q.put(barrier.wait().unwrap()).unwrap();
}

/// `_TestBarrier.test_wait_return`: one party gets index 0.
#[test]
fn barrier_wait_return() {
    let q = Queue::<u32>::new().unwrap();
    run_parties(wait_and_report, (Barrier::new(N).unwrap(), q.clone()));
    let mut got: Vec<u32> = (0..N).map(|_| q.get_timeout(PATIENCE).unwrap()).collect();
    got.sort();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
}

fn abort_at_middle((barrier, passed, broken): (Barrier, Value<u32>, Value<u32>)) {
    let i = barrier.wait().unwrap();
    if i == N / 2 {
        barrier.abort().unwrap();
        return;
    }
    match barrier.wait() {
        Ok(_) => bump(&passed),
        Err(SyncError::BrokenBarrier) => bump(&broken),
        Err(e) => panic!("{e}"),
    }
}

/// `_TestBarrier.test_abort`
#[test]
fn barrier_abort() {
    let b = Barrier::new(N).unwrap();
    let (passed, broken) = (Value::new(0u32).unwrap(), Value::new(0u32).unwrap());
    run_parties(abort_at_middle, (b.clone(), passed.clone(), broken.clone()));
    assert_eq!(passed.get().unwrap(), 0);
    assert_eq!(broken.get().unwrap(), N - 1);
    assert!(b.broken());
}

fn reset_at_middle((barrier, passed, broken, again): (Barrier, Value<u32>, Value<u32>, Value<u32>)) {
    let i = barrier.wait().unwrap();
    if i == N / 2 {
        // Wait until the others are all in the barrier (CPython polls too).
        while barrier.n_waiting() < N - 1 {
            std::thread::yield_now();
        }
        barrier.reset().unwrap();
    } else {
        match barrier.wait() {
            Ok(_) => bump(&passed),
            Err(SyncError::BrokenBarrier) => bump(&broken),
            Err(e) => panic!("{e}"),
        }
    }
    barrier.wait().unwrap();
    bump(&again);
}

/// `_TestBarrier.test_reset`
#[test]
fn barrier_reset() {
    let b = Barrier::new(N).unwrap();
    let v = || Value::new(0u32).unwrap();
    let (passed, broken, again) = (v(), v(), v());
    run_parties(reset_at_middle, (b, passed.clone(), broken.clone(), again.clone()));
    assert_eq!(passed.get().unwrap(), 0);
    assert_eq!(broken.get().unwrap(), N - 1);
    assert_eq!(again.get().unwrap(), N);
}

type AbortReset = (Barrier, Barrier, Value<u32>, Value<u32>, Value<u32>);

fn abort_then_reset((barrier, barrier2, passed, broken, again): AbortReset) {
    match barrier.wait() {
        Ok(i) if i == N / 2 => barrier.abort().unwrap(),
        Ok(_) => match barrier.wait() {
            Ok(_) => bump(&passed),
            Err(SyncError::BrokenBarrier) => bump(&broken),
            Err(e) => panic!("{e}"),
        },
        Err(e) => panic!("{e}"),
    }
    // Everyone has left the barrier before the reset, and nobody enters it before.
    if barrier2.wait().unwrap() == N / 2 {
        barrier.reset().unwrap();
    }
    barrier2.wait().unwrap();
    barrier.wait().unwrap();
    bump(&again);
}

/// `_TestBarrier.test_abort_and_reset`
#[test]
fn barrier_abort_and_reset() {
    let v = || Value::new(0u32).unwrap();
    let (passed, broken, again) = (v(), v(), v());
    let arg = (Barrier::new(N).unwrap(), Barrier::new(N).unwrap(), passed.clone(), broken.clone(), again.clone());
    run_parties(abort_then_reset, arg);
    assert_eq!(passed.get().unwrap(), 0);
    assert_eq!(broken.get().unwrap(), N - 1);
    assert_eq!(again.get().unwrap(), N);
}

fn wait_briefly(barrier: Barrier) {
    assert!(matches!(barrier.wait_timeout(Duration::from_millis(100)), Err(SyncError::BrokenBarrier)));
}

/// `_TestBarrier.test_timeout`: a party that never comes breaks the barrier for the
/// others when their wait times out.
#[test]
fn barrier_timeout() {
    let b = Barrier::new(N + 1).unwrap();
    run_parties(wait_briefly, b.clone());
    assert!(b.broken());
}

/// `_TestBarrier.test_single_thread`
#[test]
fn barrier_of_one() {
    let b = Barrier::new(1).unwrap();
    assert_eq!(b.wait().unwrap(), 0);
    assert_eq!(b.wait().unwrap(), 0);
}

fn pass_and_report((barrier, passes, out): (Barrier, u32, Queue<u32>)) {
    for i in 0..passes {
        barrier.wait().unwrap();
        out.put(i).unwrap();
    }
}

/// `_TestBarrier.test_thousand`: a thousand rounds of `N` processes in lockstep: every
/// round's reports come before any of the next round's. (One queue for all instead of
/// CPython's pipe and lock: a `put` is atomic.)
#[test]
fn barrier_thousand_rounds() {
    let passes = 1000;
    let (b, q) = (Barrier::new(N).unwrap(), Queue::<u32>::new().unwrap());
    let procs: Vec<Process> = (0..N).map(|_| started(pass_and_report, (b.clone(), passes, q.clone()))).collect();
    for i in 0..passes {
        for _ in 0..N {
            assert_eq!(q.get_timeout(PATIENCE).unwrap(), i);
        }
    }
    procs.iter().for_each(joined_ok);
}

/// The counter `_TestBarrier.test_action`'s action bumps, set in each process first.
static ACTION_RUNS: std::sync::OnceLock<Value<u32>> = std::sync::OnceLock::new();

fn bump_action_runs() {
    *ACTION_RUNS.get().expect("set before waiting").lock().unwrap() += 1;
}

fn pass_barrier_twice((b, runs): (Barrier, Value<u32>)) {
    ACTION_RUNS.set(runs).unwrap();
    b.wait().unwrap();
    b.wait().unwrap();
}

/// `_TestBarrier.test_action`: the action runs once per round, in one of the parties.
#[test]
fn barrier_action() {
    let runs = Value::new(0u32).unwrap();
    let b = Barrier::with_options(3, Some(bump_action_runs), None).unwrap();
    let kids: Vec<Process> = (0..2).map(|_| started(pass_barrier_twice, (b.clone(), runs.clone()))).collect();
    pass_barrier_twice((b, runs.clone()));
    for k in &kids {
        joined_ok(k);
    }
    assert_eq!(runs.get().unwrap(), 2);
}

/// `_TestBarrier.test_default_timeout`: a `wait` with no timeout of its own gives up
/// after the barrier's, and breaks it.
#[test]
fn barrier_default_timeout() {
    let b = Barrier::with_options(2, None, Some(Duration::from_millis(50))).unwrap();
    assert!(matches!(b.wait(), Err(SyncError::BrokenBarrier)));
    assert!(b.broken());
}
