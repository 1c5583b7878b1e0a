//! Manager queues: FIFO across processes, bounds, timeouts, joinable queues.

use std::time::Duration;

use multiproc::manager::{JoinableQueueProxy, QueueProxy};
use multiproc::{Manager, ManagerError, Process};

multiproc::test_init!();

fn writer(q: QueueProxy<String>) {
    for c in "itcast".chars() {
        q.put(c.to_string()).unwrap();
    }
}

fn reader(args: (QueueProxy<String>, QueueProxy<String>)) {
    let (q, out) = args;
    let mut s = String::new();
    for _ in 0..6 {
        s.push_str(&q.get().unwrap());
    }
    out.put(s).unwrap();
}

#[test]
fn a_writer_and_a_reader_process_share_a_queue() {
    let m = Manager::start().unwrap();
    let q = m.queue::<String>(2).unwrap();
    let out = m.queue::<String>(0).unwrap();
    // The reader starts first and blocks in the server until items come.
    let mut r = Process::new(reader, (q.clone(), out.clone()));
    r.start().unwrap();
    let mut w = Process::new(writer, q.clone());
    w.start().unwrap();
    assert_eq!(out.get().unwrap(), "itcast");
    w.join().unwrap();
    r.join().unwrap();
    assert_eq!((w.exitcode(), r.exitcode()), (Some(0), Some(0)));
}

#[test]
fn bounds_and_timeouts() {
    let m = Manager::start().unwrap();
    let q = m.queue::<u8>(1).unwrap();
    assert!(matches!(q.get_nowait(), Err(ManagerError::Empty)));
    assert!(matches!(q.get_timeout(Duration::from_millis(20)), Err(ManagerError::Empty)));
    q.put_nowait(1).unwrap();
    assert!(q.is_full().unwrap());
    assert!(matches!(q.put_nowait(2), Err(ManagerError::Full)));
    assert!(matches!(q.put_timeout(2, Duration::from_millis(20)), Err(ManagerError::Full)));
    assert_eq!(q.len().unwrap(), 1);
    assert_eq!(q.get().unwrap(), 1);
    assert!(q.is_empty().unwrap());
}

fn worker(q: JoinableQueueProxy<u32>) {
    while let Ok(n) = q.get_timeout(Duration::from_secs(30)) {
        if n == u32::MAX {
            q.task_done().unwrap();
            return;
        }
        q.task_done().unwrap();
    }
}

#[test]
fn join_waits_for_every_task_done() {
    let m = Manager::start().unwrap();
    let q = m.joinable_queue::<u32>(0).unwrap();
    for i in 0..20 {
        q.put(i).unwrap();
    }
    q.put(u32::MAX).unwrap();
    let mut p = Process::new(worker, q.clone());
    p.start().unwrap();
    q.join().unwrap();
    assert!(q.is_empty().unwrap());
    assert!(matches!(q.task_done(), Err(ManagerError::Misuse(_))));
    p.join().unwrap();
}
