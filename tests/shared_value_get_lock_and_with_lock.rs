//! `Value`/`Array` made around an existing lock (Python's `lock=` argument) and
//! `get_lock()`: the lock travels with the value, and the one `get_lock()` returns is
//! the very lock the value takes, in every process.

use multiproc::{Array, Event, Lock, LockError, Process, RLock, SharedLock, Value};

multiproc::test_init!();

fn hold_lock((lock, held, release): (SharedLock, Event, Event)) {
    let SharedLock::Lock(lock) = lock else { panic!("expected a Lock") };
    let _g = lock.acquire().unwrap();
    held.set();
    release.wait().unwrap();
}

#[test]
fn a_values_own_lock_sent_alone_is_the_lock_the_value_takes() {
    let v = Value::new(5u32).unwrap();
    let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(hold_lock, (v.get_lock(), held.clone(), release.clone()));
    p.start().unwrap();
    held.wait().unwrap();
    assert!(matches!(v.try_lock(), Err(LockError::TimedOut)));
    assert!(v.get_lock().locked());
    release.set();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(v.get().unwrap(), 5);
}

/// Moves `n` units from `a` to `b`, one at a time, holding both values' shared RLock.
fn transfer((a, b, items, n): (Value<i64>, Value<i64>, Array<i64>, i64)) {
    for _ in 0..n {
        let mut ga = a.lock().unwrap();
        let mut gb = b.lock().unwrap();
        let mut gi = items.lock().unwrap();
        *ga -= 1;
        *gb += 1;
        gi[0] += 1;
    }
}

#[test]
fn values_made_around_one_rlock_change_together_across_processes() {
    let lock = RLock::new().unwrap();
    let a = Value::with_lock(1000i64, lock.clone()).unwrap();
    let b = Value::with_lock(0i64, lock.clone()).unwrap();
    let items = Array::with_lock(&[0i64], lock.clone()).unwrap();
    assert!(matches!(a.get_lock(), SharedLock::RLock(_)));
    let mut kids: Vec<Process> =
        (0..2).map(|_| Process::new(transfer, (a.clone(), b.clone(), items.clone(), 500))).collect();
    for k in &mut kids {
        k.start().unwrap();
    }
    let mut done = false;
    while !done {
        // Under the shared lock no transfer is half done.
        let _g = lock.acquire().unwrap();
        let (x, y, z) = (a.get().unwrap(), b.get().unwrap(), items.get(0).unwrap().unwrap());
        assert_eq!((x + y, y), (1000, z));
        done = y == 1000;
    }
    for k in &mut kids {
        k.join().unwrap();
        assert_eq!(k.exitcode(), Some(0));
    }
}

fn lock_value_and_report((v, out): (Value<u8>, multiproc::Queue<String>)) {
    out.put(format!("{:?}", v.try_lock().map(|_| ()).map_err(|e| e.to_string()))).unwrap();
}

#[test]
fn a_value_around_a_lock_held_elsewhere_cannot_be_taken_in_a_child() {
    let lock = Lock::new().unwrap();
    let v = Value::with_lock(1u8, lock.clone()).unwrap();
    let out = multiproc::Queue::new().unwrap();
    let held = lock.acquire().unwrap();
    let mut p = Process::new(lock_value_and_report, (v.clone(), out.clone()));
    p.start().unwrap();
    assert!(out.get().unwrap().starts_with("Err"));
    drop(held);
    p.join().unwrap();
}
