//! Values holding descriptors or other handles, and values larger than the shared buffer,
//! go through a queue between processes.

use std::io::{Read, Write};
use std::time::Duration;

use multiproc::{Fd, Process, Queue};

multiproc::test_init!();

const LONG: Duration = Duration::from_secs(60);

fn write_to_each(q: Queue<(String, Fd)>) {
    while let Ok((text, fd)) = q.get() {
        if text == "stop" {
            break;
        }
        let mut s = fd.into_unix_stream();
        s.write_all(text.as_bytes()).unwrap();
    }
}

#[test]
fn sockets_sent_on_a_queue_arrive_usable() {
    let q = Queue::<(String, Fd)>::new().unwrap();
    let mut p = Process::new(write_to_each, q.clone());
    p.start().unwrap();
    let mut ours = Vec::new();
    for i in 0..5 {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        q.put((format!("message {i}"), Fd::from(b))).unwrap();
        ours.push(a);
    }
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    q.put(("stop".to_string(), Fd::from(b))).unwrap();
    drop(a);
    for (i, mut a) in ours.into_iter().enumerate() {
        let mut got = String::new();
        a.read_to_string(&mut got).unwrap();
        assert_eq!(got, format!("message {i}"));
    }
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

fn echo_big((q, back): (Queue<Vec<u8>>, Queue<Vec<u8>>)) {
    for _ in 0..3 {
        back.put(q.get().unwrap()).unwrap();
    }
}

#[test]
fn messages_larger_than_the_buffer_round_trip_in_order() {
    let q = Queue::<Vec<u8>>::with_buffer(2, 64 * 1024).unwrap();
    let back = Queue::<Vec<u8>>::new().unwrap();
    let mut p = Process::new(echo_big, (q.clone(), back.clone()));
    p.start().unwrap();
    let sizes = [3 << 20, 10, 100_000];
    for (i, n) in sizes.iter().enumerate() {
        q.put(vec![i as u8; *n]).unwrap();
    }
    for (i, n) in sizes.iter().enumerate() {
        assert_eq!(back.get_timeout(LONG).unwrap(), vec![i as u8; *n]);
    }
    p.join().unwrap();
}

fn reply_on((requests, n): (Queue<Queue<u64>>, u64)) {
    let reply_to = requests.get().unwrap();
    reply_to.put(n * 2).unwrap();
}

#[test]
fn a_queue_can_travel_inside_a_message_on_another_queue() {
    let requests = Queue::<Queue<u64>>::new().unwrap();
    let mut p = Process::new(reply_on, (requests.clone(), 21));
    p.start().unwrap();
    let mine = Queue::<u64>::new().unwrap();
    requests.put(mine.clone()).unwrap();
    assert_eq!(mine.get_timeout(LONG).unwrap(), 42);
    p.join().unwrap();
}
