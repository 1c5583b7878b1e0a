//! `shutdown(true)` (Python 3.13's `shutdown(immediate=True)`): what is queued is dropped
//! and counted as done, gets and puts fail with `ShutDown` at once, blocked callers in
//! other processes wake up with it.

use multiproc::{JoinableQueue, Process, Queue, QueueError};

multiproc::test_init!();

fn shut_down_now(q: JoinableQueue<u32>) {
    q.shutdown(true).unwrap();
}

#[test]
fn an_immediate_shutdown_elsewhere_drops_the_items_and_releases_join() {
    let q = JoinableQueue::<u32>::new().unwrap();
    for n in 0..3 {
        q.put(n).unwrap();
    }
    let mut p = Process::new(shut_down_now, q.clone());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert!(q.is_shut_down());
    assert!(matches!(q.get_nowait(), Err(QueueError::ShutDown)));
    assert!(matches!(q.get(), Err(QueueError::ShutDown)));
    assert!(matches!(q.put(4), Err(QueueError::ShutDown)));
    assert_eq!(q.unfinished(), 0);
    q.join().unwrap();
}

#[test]
fn a_plain_shutdown_keeps_the_items_for_gets() {
    let q = Queue::<u32>::new().unwrap();
    q.put(1).unwrap();
    q.shutdown(false).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    assert!(matches!(q.get(), Err(QueueError::ShutDown)));
}

fn report_blocked((q, full, out): (Queue<u32>, Queue<u32>, Queue<String>)) {
    out.put(format!("{:?}", q.get().map_err(|e| e.to_string()))).unwrap();
    out.put(format!("{:?}", full.put(2).map_err(|e| e.to_string()))).unwrap();
}

#[test]
fn blocked_callers_in_another_process_wake_with_shut_down() {
    let empty = Queue::<u32>::new().unwrap();
    let full = Queue::<u32>::bounded(1).unwrap();
    full.put(1).unwrap();
    let out = Queue::<String>::new().unwrap();
    let mut p = Process::new(report_blocked, (empty.clone(), full.clone(), out.clone()));
    p.start().unwrap();
    // Whether the child is asleep in `get` yet or not, it must see the shutdown.
    empty.shutdown(true).unwrap();
    full.shutdown(true).unwrap();
    let shut = format!("{:?}", Err::<(), _>(QueueError::ShutDown.to_string()));
    assert_eq!(out.get().unwrap(), shut);
    assert_eq!(out.get().unwrap(), shut);
    p.join().unwrap();
}

#[test]
fn an_immediate_shutdown_closes_the_descriptors_of_dropped_messages() {
    use std::io::Read;
    let q = Queue::<multiproc::Fd>::new().unwrap();
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    q.put(multiproc::Fd::new(ours)).unwrap();
    theirs.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(theirs.read(&mut byte).unwrap_err().kind(), std::io::ErrorKind::WouldBlock, "queued: still open");
    q.shutdown(true).unwrap();
    assert_eq!(theirs.read(&mut byte).unwrap(), 0, "dropped with its message: closed");
}
