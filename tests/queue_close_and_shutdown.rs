//! `close` ends one handle; `shutdown` ends the queue for everyone, after draining.

use std::time::Duration;

use multiproc::{Process, Queue, QueueError};

multiproc::test_init!();

#[test]
fn a_closed_handle_refuses_puts_and_gets_but_what_it_put_arrives() {
    let q = Queue::<u32>::new().unwrap();
    let other = q.clone();
    q.put(7).unwrap();
    q.close();
    assert!(matches!(q.put(8), Err(QueueError::Closed)));
    assert!(matches!(q.get_nowait(), Err(QueueError::Closed)));
    // Clones in this process share the handle, as Python references do.
    assert!(matches!(other.get_nowait(), Err(QueueError::Closed)));
}

fn read_one((q, out): (Queue<u32>, Queue<u32>)) {
    out.put(q.get().unwrap()).unwrap();
}

#[test]
fn closing_in_one_process_leaves_other_processes_working() {
    let q = Queue::<u32>::new().unwrap();
    let out = Queue::<u32>::new().unwrap();
    let mut p = Process::new(read_one, (q.clone(), out.clone()));
    p.start().unwrap();
    q.put(42).unwrap();
    q.close();
    assert_eq!(out.get_timeout(Duration::from_secs(60)).unwrap(), 42);
    p.join().unwrap();
}

fn drain_until_shutdown((q, out): (Queue<u32>, Queue<Vec<u32>>)) {
    let mut got = Vec::new();
    loop {
        match q.get() {
            Ok(v) => got.push(v),
            Err(QueueError::ShutDown) => break,
            Err(e) => panic!("{e}"),
        }
    }
    out.put(got).unwrap();
}

#[test]
fn shutdown_drains_then_ends_blocked_consumers() {
    let q = Queue::<u32>::new().unwrap();
    let out = Queue::<Vec<u32>>::new().unwrap();
    let mut p = Process::new(drain_until_shutdown, (q.clone(), out.clone()));
    p.start().unwrap();
    for i in 0..5 {
        q.put(i).unwrap();
    }
    q.shutdown(false).unwrap();
    assert!(q.is_shut_down());
    assert!(matches!(q.put(9), Err(QueueError::ShutDown)));
    let got = out.get_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(got, [0, 1, 2, 3, 4]);
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}
