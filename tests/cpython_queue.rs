//! Ports of CPython's queue tests.
//!
//! Provenance: `Lib/test/_test_multiprocessing.py` of CPython (the `main` branch at
//! commit 00811485ee5f, the 3.15 development line), class `_TestQueue`. Each test names
//! the method it ports; Python's `ProcessFuture.run(q.put, ...)` (a call made in another
//! process) is a child process here that asserts on the outcome and exits with it.
//!
//! Differences, and cases not ported:
//! - Timing assertions (`assertTimingAlmostEqual`, off by default in CPython;
//!   `test_timeout`'s lower bound) are left out: no wall-clock assertions here.
//! - `time.sleep(DELTA)` "so the values reach the pipe" is not needed: a bounded `put`
//!   is in the queue when it returns, and so is an unbounded one unless the shared buffer
//!   is full.
//! - `test_queue_feeder_donot_stop_onexc`, `test_queue_feeder_on_queue_feeder_error`: a
//!   value that does not serialize is refused by `put` itself (`QueueError::Encode`), so
//!   there is no feeder error to hook; what is kept is "the queue goes on, its size right".
//! - `test_closed_queue_empty_exceptions`: `close` only stops this handle's `put`/`get`;
//!   `empty()` reads shared memory and still answers (Python raises `OSError`).
//! - `test_no_import_lock_contention`: about Python's import lock.

use std::time::Duration;

use multiproc::{Event, JoinableQueue, Process, Queue, QueueError};
use serde::{Deserialize, Serialize, Serializer};

multiproc::test_init!();

const PATIENCE: Duration = Duration::from_secs(60);

fn run_child<A>(f: fn(A), arg: A) -> Option<i32>
where
    A: Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut p = Process::new(f, arg);
    p.start().unwrap();
    p.join().unwrap();
    p.exitcode()
}

fn take_six((q, can_start, done): (Queue<u32>, Event, Event)) {
    can_start.wait().unwrap();
    for _ in 0..6 {
        q.get().unwrap();
    }
    done.set();
}

/// `_TestQueue.test_put`
#[test]
fn put() {
    let q = Queue::<u32>::bounded(6).unwrap();
    let (can_start, done) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(take_six, (q.clone(), can_start.clone(), done.clone()));
    p.start().unwrap();
    assert!(q.empty());
    assert!(!q.full());
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.put_timeout(3, PATIENCE).unwrap();
    q.put_nowait(4).unwrap();
    q.put_timeout(5, Duration::ZERO).unwrap();
    q.put_nowait(6).unwrap();
    assert!(!q.empty());
    assert!(q.full());
    assert_eq!(q.qsize(), 6);
    assert!(matches!(q.put_nowait(7), Err(QueueError::Full)));
    assert!(matches!(q.put_timeout(7, Duration::from_millis(100)), Err(QueueError::Full)));
    assert!(matches!(q.put_timeout(7, Duration::ZERO), Err(QueueError::Full)));
    can_start.set();
    done.wait().unwrap();
    assert!(q.empty());
    assert!(!q.full());
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

fn put_four((q, can_start, done): (Queue<u32>, Event, Event)) {
    can_start.wait().unwrap();
    for i in 2..6 {
        q.put(i).unwrap();
    }
    done.set();
}

/// `_TestQueue.test_get`
#[test]
fn get() {
    let q = Queue::<u32>::new().unwrap();
    let (can_start, done) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(put_four, (q.clone(), can_start.clone(), done.clone()));
    p.start().unwrap();
    assert!(q.empty());
    can_start.set();
    done.wait().unwrap();
    assert!(!q.empty());
    assert_eq!(q.get().unwrap(), 2);
    assert_eq!(q.get_timeout(PATIENCE).unwrap(), 3);
    assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), 4);
    assert_eq!(q.get_nowait().unwrap(), 5);
    assert!(q.empty());
    assert!(matches!(q.get_nowait(), Err(QueueError::Empty)));
    assert!(matches!(q.get_timeout(Duration::from_millis(100)), Err(QueueError::Empty)));
    p.join().unwrap();
}

fn put_ten_more(q: Queue<u32>) {
    for i in 10..20 {
        q.put(i).unwrap();
    }
}

/// `_TestQueue.test_fork`: a child puts after the parent did; everything arrives, in order.
#[test]
fn child_puts_after_parent() {
    let q = Queue::<u32>::new().unwrap();
    for i in 0..10 {
        q.put(i).unwrap();
    }
    let mut p = Process::new(put_ten_more, q.clone());
    p.start().unwrap();
    for i in 0..20 {
        assert_eq!(q.get_timeout(PATIENCE).unwrap(), i);
    }
    assert!(matches!(q.get_nowait(), Err(QueueError::Empty)));
    p.join().unwrap();
}

/// `_TestQueue.test_qsize`
#[test]
fn qsize() {
    let q = Queue::<u32>::new().unwrap();
    assert_eq!(q.qsize(), 0);
    q.put(1).unwrap();
    assert_eq!(q.qsize(), 1);
    q.put(5).unwrap();
    assert_eq!(q.qsize(), 2);
    q.get().unwrap();
    assert_eq!(q.qsize(), 1);
    q.get().unwrap();
    assert_eq!(q.qsize(), 0);
}

fn mark_done(q: JoinableQueue<Option<u32>>) {
    while let Some(_item) = q.get().unwrap() {
        q.task_done().unwrap();
    }
}

/// `_TestQueue.test_task_done`
#[test]
fn task_done() {
    let q = JoinableQueue::<Option<u32>>::new().unwrap();
    let mut workers: Vec<Process> = (0..4).map(|_| Process::new(mark_done, q.clone())).collect();
    for p in &mut workers {
        p.start().unwrap();
    }
    for i in 0..10 {
        q.put(Some(i)).unwrap();
    }
    q.join().unwrap();
    assert_eq!(q.unfinished(), 0);
    for _ in &workers {
        q.put(None).unwrap();
    }
    for p in &workers {
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
}

/// `_TestQueue.test_timeout`
#[test]
fn get_timeout_on_empty_queue() {
    let q = Queue::<u32>::new().unwrap();
    assert!(matches!(q.get_timeout(Duration::from_millis(200)), Err(QueueError::Empty)));
}

/// A value that does not serialize (Python's `__reduce__` raising).
#[derive(Debug, Deserialize)]
enum Item {
    Fine(bool),
    Unserializable,
}

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Item::Fine(b) => s.serialize_newtype_variant("Item", 0, "Fine", b),
            Item::Unserializable => Err(serde::ser::Error::custom("cannot serialize")),
        }
    }
}

/// `_TestQueue.test_queue_feeder_donot_stop_onexc`: after a value that does not
/// serialize, the queue goes on, and its size is right.
#[test]
fn unserializable_value_leaves_the_queue_working() {
    let q = Queue::<Item>::new().unwrap();
    assert!(matches!(q.put(Item::Unserializable), Err(QueueError::Encode(_))));
    q.put(Item::Fine(true)).unwrap();
    assert!(matches!(q.get_timeout(PATIENCE).unwrap(), Item::Fine(true)));
    let q = Queue::<Item>::bounded(1).unwrap();
    assert!(matches!(q.put(Item::Unserializable), Err(QueueError::Encode(_))));
    q.put(Item::Fine(true)).unwrap();
    assert_eq!(q.qsize(), 1);
    assert!(matches!(q.get_timeout(PATIENCE).unwrap(), Item::Fine(true)));
    assert!(q.empty());
}

/// `_TestQueue.test_closed_queue_put_get_exceptions`
#[test]
fn closed_queue_refuses_put_and_get() {
    let q = Queue::<String>::new().unwrap();
    let j = JoinableQueue::<String>::new().unwrap();
    for q in [&q, &*j] {
        q.close();
        assert!(matches!(q.put("foo".into()), Err(QueueError::Closed)));
        assert!(matches!(q.get(), Err(QueueError::Closed)));
    }
}

fn put_after_shutdown(q: Queue<String>) {
    assert!(matches!(q.put("data".into()), Err(QueueError::ShutDown)));
}

fn get_after_shutdown(q: Queue<String>) {
    assert!(matches!(q.get(), Err(QueueError::ShutDown)));
}

fn get_data(q: Queue<String>) {
    assert_eq!(q.get().unwrap(), "data");
}

fn join_queue(q: JoinableQueue<String>) {
    q.join().unwrap();
}

/// Puts and gets fail with `ShutDown`, here and in other processes.
fn assert_shut_down(q: &Queue<String>) {
    assert_eq!(run_child(put_after_shutdown, q.clone()), Some(0));
    assert!(matches!(q.put_nowait("data".into()), Err(QueueError::ShutDown)));
    assert_eq!(run_child(get_after_shutdown, q.clone()), Some(0));
    assert!(matches!(q.get_nowait(), Err(QueueError::ShutDown)));
}

/// `_TestQueue.test_shutdown_empty`
#[test]
fn shutdown_empty() {
    let q = Queue::<String>::new().unwrap();
    q.shutdown(false).unwrap();
    assert_eq!(q.qsize(), 0);
    assert_shut_down(&q);
    let j = JoinableQueue::<String>::new().unwrap();
    let mut joiner = Process::new(join_queue, j.clone());
    joiner.start().unwrap();
    j.shutdown(false).unwrap();
    // No task was unfinished: the joiner returns.
    joiner.join().unwrap();
    assert_eq!(joiner.exitcode(), Some(0));
    assert_shut_down(&j);
}

/// `_TestQueue.test_shutdown_nonempty`: what is left is handed out, then nothing.
#[test]
fn shutdown_nonempty() {
    let q = Queue::<String>::bounded(1).unwrap();
    q.put("data".into()).unwrap();
    q.shutdown(false).unwrap();
    assert_eq!(q.qsize(), 1);
    assert_eq!(run_child(get_data, q.clone()), Some(0));
    assert_shut_down(&q);

    let j = JoinableQueue::<String>::bounded(1).unwrap();
    j.put("data".into()).unwrap();
    let mut joiner = Process::new(join_queue, j.clone());
    joiner.start().unwrap();
    j.shutdown(false).unwrap();
    assert_eq!(j.qsize(), 1);
    assert_eq!(run_child(get_data, (*j).clone()), Some(0));
    // The task is taken but not done: the joiner still waits.
    assert!(!joiner.join_timeout(Duration::from_millis(50)).unwrap());
    assert_shut_down(&j);
    j.task_done().unwrap();
    joiner.join().unwrap();
    assert_eq!(joiner.exitcode(), Some(0));
}

fn take_one(q: JoinableQueue<String>) {
    assert_eq!(q.get().unwrap(), "data");
}

/// The accounting of `_TestQueue.test_shutdown_immediate_with_unfinished` without the
/// shutdown (see `shutdown_immediate_with_unfinished` for it): the joiner waits while a
/// task is unfinished, and marking more tasks done than were put is an error.
#[test]
fn task_done_too_often() {
    let q = JoinableQueue::<String>::new().unwrap();
    q.put("data".into()).unwrap();
    q.put("data".into()).unwrap();
    let mut joiner = Process::new(join_queue, q.clone());
    joiner.start().unwrap();
    assert_eq!(run_child(take_one, q.clone()), Some(0));
    assert_eq!(q.get_timeout(PATIENCE).unwrap(), "data");
    q.task_done().unwrap();
    assert!(!joiner.join_timeout(Duration::from_millis(50)).unwrap());
    q.task_done().unwrap();
    assert!(matches!(q.task_done(), Err(QueueError::TaskDoneTooOften)));
    joiner.join().unwrap();
    assert_eq!(joiner.exitcode(), Some(0));
}

/// `_TestQueue.test_shutdown_immediate`: what is queued is dropped at once.
#[test]
fn shutdown_immediate() {
    let q = Queue::<String>::new().unwrap();
    q.put("data".into()).unwrap();
    q.shutdown(true).unwrap();
    assert_eq!(q.qsize(), 0);
    assert_shut_down(&q);
    let j = JoinableQueue::<String>::new().unwrap();
    j.put("data".into()).unwrap();
    let mut joiner = Process::new(join_queue, j.clone());
    joiner.start().unwrap();
    j.shutdown(true).unwrap();
    // The dropped task counts as done: the joiner returns.
    joiner.join().unwrap();
    assert_eq!(joiner.exitcode(), Some(0));
    assert_eq!(j.qsize(), 0);
    assert_shut_down(&j);
}

/// `_TestQueue.test_shutdown_immediate_with_unfinished`: an immediate shutdown counts
/// the dropped item as done, not the one a consumer took.
#[test]
fn shutdown_immediate_with_unfinished() {
    let q = JoinableQueue::<String>::new().unwrap();
    q.put("data".into()).unwrap();
    q.put("data".into()).unwrap();
    let mut joiner = Process::new(join_queue, q.clone());
    joiner.start().unwrap();
    assert_eq!(run_child(take_one, q.clone()), Some(0));
    q.shutdown(true).unwrap();
    assert!(!joiner.join_timeout(Duration::from_millis(50)).unwrap());
    q.task_done().unwrap();
    joiner.join().unwrap();
    assert_eq!(joiner.exitcode(), Some(0));
    assert!(matches!(q.task_done(), Err(QueueError::TaskDoneTooOften)));
}
