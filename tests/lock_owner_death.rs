//! A process that dies holding a lock does not deadlock the others: the next one to
//! lock is told the owner died, holds the lock, and can repair what it protects.

use std::time::Duration;

use multiproc::{Event, Lock, LockError, Process, RLock, Value};

multiproc::test_init!();

const LONG: Duration = Duration::from_secs(60);

fn hold_and_die((lock, held): (Lock, Event)) {
    let _guard = lock.acquire().unwrap();
    held.set();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn the_next_locker_after_a_killed_owner_gets_owner_died() {
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let mut p = Process::new(hold_and_die, (lock.clone(), held.clone()));
    p.start().unwrap();
    held.wait().unwrap();
    assert!(matches!(lock.try_acquire(), Err(LockError::TimedOut)));
    p.kill().unwrap();
    p.join().unwrap();
    let guard = match lock.acquire_timeout(LONG) {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected OwnerDied, got {other:?}"),
    };
    drop(guard);
    // Recovered: the lock works normally again.
    drop(lock.acquire_timeout(LONG).unwrap());
}

fn abort_holding(lock: RLock) {
    let _g = lock.acquire().unwrap();
    std::process::abort();
}

#[test]
fn an_rlock_whose_owner_aborted_is_recovered() {
    let lock = RLock::new().unwrap();
    let mut p = Process::new(abort_holding, lock.clone());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-6));
    let g = lock.acquire_timeout(LONG).or_else(LockError::recover).unwrap();
    let again = lock.acquire().unwrap();
    drop((again, g));
}

fn half_update_then_die(v: Value<[u64; 2]>) {
    let mut g = v.lock().unwrap();
    g[0] += 1; // the second half never comes
    std::process::exit(3);
}

#[test]
fn a_value_left_half_updated_is_reported_with_the_guard_to_repair_it() {
    let v = Value::new([0u64, 0]).unwrap();
    let mut p = Process::new(half_update_then_die, v.clone());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(3));
    match v.lock_timeout(LONG) {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!(*g, [1, 0]);
            g[1] = g[0]; // repair
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert_eq!(v.get().unwrap(), [1, 1]);
}

#[test]
fn relocking_a_held_lock_on_the_same_thread_is_an_error_not_a_hang() {
    let lock = Lock::new().unwrap();
    let _g = lock.acquire().unwrap();
    assert!(matches!(lock.acquire(), Err(LockError::WouldDeadlock)));
}
