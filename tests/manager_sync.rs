//! Manager locks, semaphores, events, conditions and barriers across processes.

use std::time::Duration;

use multiproc::manager::{BarrierProxy, ConditionProxy, DictProxy, EventProxy, LockProxy, ValueProxy};
use multiproc::{Manager, ManagerError, Process};

multiproc::test_init!();

fn locked_increments(args: (LockProxy, ValueProxy<u64>)) {
    let (lock, v) = args;
    for _ in 0..50 {
        let _g = lock.lock().unwrap();
        // A read then a write: safe only under the lock.
        let n = v.get().unwrap();
        v.set(n + 1).unwrap();
    }
}

#[test]
fn a_lock_makes_get_then_set_safe() {
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let v = m.value(0u64).unwrap();
    let mut ps: Vec<Process> = (0..3).map(|_| Process::new(locked_increments, (lock.clone(), v.clone()))).collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for p in &ps {
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
    assert_eq!(v.get().unwrap(), 150);
}

fn holds_lock_and_dies(args: (LockProxy, EventProxy)) {
    let (lock, held) = args;
    lock.acquire().unwrap();
    held.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_lock_held_by_a_killed_process_is_released() {
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let held = m.event().unwrap();
    let mut p = Process::new(holds_lock_and_dies, (lock.clone(), held.clone()));
    p.start().unwrap();
    held.wait().unwrap();
    assert!(!lock.try_acquire().unwrap());
    p.kill().unwrap();
    p.join().unwrap();
    // The server releases it when it sees the connection close.
    assert!(lock.acquire_timeout(Duration::from_secs(30)).unwrap());
}

#[test]
fn rlock_and_semaphore_rules() {
    let m = Manager::start().unwrap();
    let r = m.rlock().unwrap();
    r.acquire().unwrap();
    assert!(r.try_acquire().unwrap());
    let other = std::thread::spawn({
        let r = r.clone();
        move || (r.try_acquire().unwrap(), r.release().is_err())
    });
    assert_eq!(other.join().unwrap(), (false, true));
    r.release().unwrap();
    r.release().unwrap();
    assert!(matches!(r.release(), Err(ManagerError::Misuse(_))));

    let s = m.semaphore(1).unwrap();
    assert!(s.try_acquire().unwrap());
    assert!(!s.acquire_timeout(Duration::from_millis(10)).unwrap());
    s.release().unwrap();
    s.release().unwrap(); // unbounded
    assert_eq!(s.value().unwrap(), 2);
}

fn waiter(args: (ConditionProxy, DictProxy<String, u32>, BarrierProxy)) {
    let (c, d, b) = args;
    let g = c.lock().unwrap();
    b.wait().unwrap();
    assert!(c.wait_while_not(|| d.get("go").unwrap() == Some(1), Some(Duration::from_secs(60))).unwrap());
    g.unlock().unwrap();
}

#[test]
fn condition_and_barrier_coordinate_processes() {
    let m = Manager::start().unwrap();
    let c = m.condition().unwrap();
    let d = m.dict::<String, u32>().unwrap();
    let b = m.barrier(2).unwrap();
    let mut p = Process::new(waiter, (c.clone(), d.clone(), b.clone()));
    p.start().unwrap();
    // Passing the barrier means the child holds the condition's lock; it releases it in wait.
    b.wait().unwrap();
    {
        let _g = c.lock().unwrap();
        d.insert("go".into(), 1).unwrap();
        c.notify_all().unwrap();
    }
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert!(matches!(c.notify(1), Err(ManagerError::Misuse(_))));
}

#[test]
fn a_barrier_wait_that_times_out_breaks_it() {
    let m = Manager::start().unwrap();
    let b = m.barrier(2).unwrap();
    assert!(matches!(b.wait_timeout(Duration::from_millis(20)), Err(ManagerError::BrokenBarrier)));
    assert!(b.is_broken().unwrap());
    b.reset().unwrap();
    assert!(!b.is_broken().unwrap());
    assert_eq!(b.parties().unwrap(), 2);
    let e = m.event().unwrap();
    assert!(!e.is_set().unwrap());
    e.set().unwrap();
    assert!(e.wait_timeout(Duration::ZERO).unwrap());
    e.clear().unwrap();
    assert!(!e.wait_timeout(Duration::from_millis(5)).unwrap());
}
