//! Semaphore, BoundedSemaphore, Event, Condition and Barrier between processes, with
//! their timeouts.

use std::time::Duration;

use multiproc::{Barrier, BoundedSemaphore, Condition, Event, Process, Queue, Semaphore, SyncError, Value};

multiproc::test_init!();

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(20);

fn release_twice(s: Semaphore) {
    s.release().unwrap();
    s.release().unwrap();
}

#[test]
fn a_semaphore_released_by_a_child_lets_the_parent_through() {
    let s = Semaphore::new(0).unwrap();
    assert!(matches!(s.acquire_timeout(SHORT), Err(SyncError::TimedOut)));
    let mut p = Process::new(release_twice, s.clone());
    p.start().unwrap();
    s.acquire_timeout(LONG).unwrap();
    s.acquire_timeout(LONG).unwrap();
    assert!(!s.try_acquire());
    p.join().unwrap();
}

#[test]
fn a_bounded_semaphore_refuses_an_extra_release() {
    let s = BoundedSemaphore::new(2).unwrap();
    assert!(matches!(s.release(), Err(SyncError::OverReleased { bound: 2 })));
    s.acquire().unwrap();
    s.release().unwrap();
    assert_eq!(s.value(), 2);
}

fn wait_then_report((e, out): (Event, Queue<bool>)) {
    out.put(e.wait_timeout(LONG).unwrap()).unwrap();
}

#[test]
fn an_event_set_by_the_parent_wakes_a_waiting_child() {
    let e = Event::new().unwrap();
    let out = Queue::new().unwrap();
    assert!(!e.wait_timeout(SHORT).unwrap());
    let mut p = Process::new(wait_then_report, (e.clone(), out.clone()));
    p.start().unwrap();
    e.set();
    assert!(out.get_timeout(LONG).unwrap());
    e.clear();
    assert!(!e.is_set());
    p.join().unwrap();
}

fn notify_when_ready((c, v): (Condition, Value<u32>)) {
    let mut g = c.acquire().unwrap();
    v.set(7).unwrap();
    g.notify_all();
}

#[test]
fn a_condition_waiter_sees_the_state_the_notifier_set() {
    let c = Condition::new().unwrap();
    let v = Value::new(0u32).unwrap();
    let mut g = c.acquire().unwrap();
    assert!(!g.wait_timeout(SHORT).unwrap());
    let mut p = Process::new(notify_when_ready, (c.clone(), v.clone()));
    p.start().unwrap();
    assert!(g.wait_for(|| v.get().unwrap() == 7, Some(LONG)).unwrap());
    drop(g);
    p.join().unwrap();
}

fn meet((b, out): (Barrier, Queue<u32>)) {
    out.put(b.wait_timeout(LONG).unwrap()).unwrap();
}

#[test]
fn a_barrier_lets_all_parties_through_together() {
    let b = Barrier::new(3).unwrap();
    let out = Queue::new().unwrap();
    let mut ps: Vec<Process> = (0..2).map(|_| Process::new(meet, (b.clone(), out.clone()))).collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    let mine = b.wait_timeout(LONG).unwrap();
    let mut indices = vec![mine, out.get_timeout(LONG).unwrap(), out.get_timeout(LONG).unwrap()];
    indices.sort();
    assert_eq!(indices, [0, 1, 2]);
    for p in &ps {
        p.join().unwrap();
    }
}

#[test]
fn a_barrier_wait_that_times_out_breaks_it_until_reset() {
    let b = Barrier::new(2).unwrap();
    assert!(matches!(b.wait_timeout(SHORT), Err(SyncError::BrokenBarrier)));
    assert!(b.broken());
    assert!(matches!(b.wait_timeout(SHORT), Err(SyncError::BrokenBarrier)));
    b.reset().unwrap();
    assert!(!b.broken());
    assert_eq!(b.n_waiting(), 0);
}
