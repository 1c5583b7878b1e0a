//! A timed `put` on a full queue fails with `Full` and a timed `get` on an empty one with
//! `Empty`, as Python's `queue.Full` / `queue.Empty` (and the manager's queue proxy).

use std::time::Duration;

use multiproc::{Process, Queue, QueueError};

multiproc::test_init!();

const SHORT: Duration = Duration::from_millis(20);

fn name(r: Result<(), QueueError>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(QueueError::Full) => "Full".into(),
        Err(QueueError::Empty) => "Empty".into(),
        Err(e) => format!("other: {e}"),
    }
}

/// Tries a timed put on `full` and a timed get on `empty`, and reports what each gave.
fn try_both((full, empty, out): (Queue<u32>, Queue<u32>, Queue<(String, String)>)) {
    let put = name(full.put_timeout(2, SHORT));
    let get = name(empty.get_timeout(SHORT).map(drop));
    out.put((put, get)).unwrap();
}

#[test]
fn timed_calls_in_another_process_report_full_and_empty() {
    let full = Queue::<u32>::bounded(1).unwrap();
    full.put(1).unwrap();
    let empty = Queue::<u32>::new().unwrap();
    let out = Queue::new().unwrap();
    let mut p = Process::new(try_both, (full.clone(), empty.clone(), out.clone()));
    p.start().unwrap();
    assert_eq!(out.get().unwrap(), ("Full".to_string(), "Empty".to_string()));
    p.join().unwrap();
    assert_eq!(full.qsize(), 1, "the refused put left nothing behind");
}

#[test]
fn a_timed_get_on_a_simple_queue_reports_empty() {
    let q = multiproc::SimpleQueue::<u32>::new().unwrap();
    assert!(matches!(q.get_timeout(SHORT), Err(QueueError::Empty)));
}
