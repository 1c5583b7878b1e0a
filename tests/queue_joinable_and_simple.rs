//! `JoinableQueue` counts tasks until `task_done`; `SimpleQueue` is put/get/empty.

use std::time::Duration;

use multiproc::{JoinableQueue, Process, QueueError, SimpleQueue};

multiproc::test_init!();

fn work(q: JoinableQueue<u32>) {
    loop {
        let _n = q.get().unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn join_returns_once_every_task_is_done() {
    let q = JoinableQueue::<u32>::new().unwrap();
    for n in 0..50 {
        q.put(n).unwrap();
    }
    assert_eq!(q.unfinished(), 50);
    assert!(!q.join_timeout(Duration::from_millis(10)).unwrap());
    let mut w = Process::new(work, q.clone());
    w.start().unwrap();
    q.join().unwrap();
    assert_eq!(q.unfinished(), 0);
    assert!(q.empty());
    w.kill().unwrap();
    w.join().unwrap();
}

#[test]
fn task_done_too_often_is_an_error() {
    let q = JoinableQueue::<u32>::new().unwrap();
    q.put(1).unwrap();
    q.get().unwrap();
    q.task_done().unwrap();
    assert!(matches!(q.task_done(), Err(QueueError::TaskDoneTooOften)));
}

fn simple_child(q: SimpleQueue<Vec<String>>) {
    q.put(vec!["1".into(), "23".into(), "sdad".into()]).unwrap();
}

#[test]
fn a_simple_queue_carries_values_from_a_child() {
    let q = SimpleQueue::<Vec<String>>::new().unwrap();
    assert!(q.empty());
    let mut p = Process::new(simple_child, q.clone());
    p.start().unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), ["1", "23", "sdad"]);
    p.join().unwrap();
    q.close();
    assert!(matches!(q.get(), Err(QueueError::Closed)));
}
