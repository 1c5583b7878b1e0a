//! Blocking, timed and non-blocking puts and gets, woken by other processes.

use std::time::Duration;

use multiproc::{Event, Process, Queue, QueueError};

multiproc::test_init!();

const LONG: Duration = Duration::from_secs(60);

#[test]
fn an_empty_queue_times_out_and_reports_empty() {
    let q = Queue::<u32>::new().unwrap();
    assert!(matches!(q.get_timeout(Duration::from_millis(20)), Err(QueueError::Empty)));
    assert!(matches!(q.get_nowait(), Err(QueueError::Empty)));
    assert!(q.empty());
    assert_eq!(q.qsize(), 0);
}

#[test]
fn a_full_bounded_queue_refuses_and_times_out() {
    let q = Queue::<u32>::bounded(2).unwrap();
    q.put(1).unwrap();
    q.put_nowait(2).unwrap();
    assert!(q.full());
    assert!(matches!(q.put_nowait(3), Err(QueueError::Full)));
    assert!(matches!(q.put_timeout(3, Duration::from_millis(20)), Err(QueueError::Full)));
    assert_eq!(q.qsize(), 2);
    assert_eq!(q.get().unwrap(), 1);
    q.put_timeout(3, LONG).unwrap();
    assert_eq!([q.get().unwrap(), q.get().unwrap()], [2, 3]);
}

fn put_after((q, go): (Queue<String>, Event)) {
    go.wait().unwrap();
    q.put("late".to_string()).unwrap();
}

#[test]
fn a_blocked_get_wakes_when_another_process_puts() {
    let q = Queue::<String>::new().unwrap();
    let go = Event::new().unwrap();
    let mut p = Process::new(put_after, (q.clone(), go.clone()));
    p.start().unwrap();
    go.set();
    assert_eq!(q.get_timeout(LONG).unwrap(), "late");
    p.join().unwrap();
}

fn take_one((q, done): (Queue<u32>, Queue<u32>)) {
    let v = q.get().unwrap();
    done.put(v).unwrap();
}

#[test]
fn a_blocked_put_on_a_full_queue_wakes_when_another_process_gets() {
    let q = Queue::<u32>::bounded(1).unwrap();
    let done = Queue::<u32>::new().unwrap();
    q.put(1).unwrap();
    let mut p = Process::new(take_one, (q.clone(), done.clone()));
    p.start().unwrap();
    // Blocks until the child has taken 1.
    q.put_timeout(2, LONG).unwrap();
    assert_eq!(done.get_timeout(LONG).unwrap(), 1);
    assert_eq!(q.get().unwrap(), 2);
    p.join().unwrap();
}

#[test]
fn an_unbounded_put_never_blocks_even_past_the_shared_buffer() {
    let q = Queue::<Vec<u8>>::with_buffer(0, 4096).unwrap();
    for i in 0..100u8 {
        q.put_nowait(vec![i; 200]).unwrap();
    }
    for i in 0..100u8 {
        assert_eq!(q.get_timeout(LONG).unwrap(), vec![i; 200]);
    }
    q.join_thread();
}
