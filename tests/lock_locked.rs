//! `Lock::locked()` / `RLock::locked()` tell whether any process holds the lock, without
//! taking it (Python's `locked()`); a lock whose holder was killed reads as free.

use multiproc::{Event, Lock, LockError, Process, RLock};

multiproc::test_init!();

fn hold_until_told((lock, held, release): (Lock, Event, Event)) {
    let _guard = lock.acquire().unwrap();
    held.set();
    release.wait().unwrap();
}

#[test]
fn a_lock_held_by_another_process_reads_as_locked_until_released() {
    let lock = Lock::new().unwrap();
    let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
    assert!(!lock.locked());
    let mut p = Process::new(hold_until_told, (lock.clone(), held.clone(), release.clone()));
    p.start().unwrap();
    held.wait().unwrap();
    assert!(lock.locked());
    assert!(lock.locked(), "asking does not take it");
    release.set();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert!(!lock.locked());
}

fn hold_forever((lock, held): (RLock, Event)) {
    let _outer = lock.acquire().unwrap();
    let _inner = lock.acquire().unwrap();
    held.set();
    Event::new().unwrap().wait().unwrap();
}

#[test]
fn an_rlock_whose_holder_is_killed_reads_as_free_and_the_next_locker_is_told() {
    let lock = RLock::new().unwrap();
    let held = Event::new().unwrap();
    let mut p = Process::new(hold_forever, (lock.clone(), held.clone()));
    p.start().unwrap();
    held.wait().unwrap();
    assert!(lock.locked());
    p.kill().unwrap();
    p.join().unwrap();
    assert!(!lock.locked());
    assert!(matches!(lock.acquire(), Err(LockError::OwnerDied(_))));
}
