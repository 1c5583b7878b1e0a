//! Pipes: send and recv both ways, timeouts, poll, raw bytes, simplex direction, wait.

use std::time::Duration;

use multiproc::{Connection, Pipe, PipeError, Process, wait};

multiproc::test_init!();

const LONG: Duration = Duration::from_secs(60);

fn reply(conn: Connection<String>) {
    let got = conn.recv().unwrap();
    conn.send(format!("{got}, it's me")).unwrap();
}

#[test]
fn a_duplex_pipe_carries_values_both_ways() {
    let (a, b) = Pipe::duplex::<String>().unwrap();
    let mut p = Process::new(reply, b);
    p.start().unwrap();
    a.send("hello".to_string()).unwrap();
    assert_eq!(a.recv_timeout(LONG).unwrap(), "hello, it's me");
    p.join().unwrap();
}

#[test]
fn recv_times_out_and_poll_sees_a_message_coming() {
    let (a, b) = Pipe::duplex::<u64>().unwrap();
    assert!(matches!(a.recv_timeout(Duration::from_millis(10)), Err(PipeError::TimedOut)));
    assert!(!a.poll(Some(Duration::ZERO)).unwrap());
    b.send(5).unwrap();
    b.send(6).unwrap();
    assert!(a.poll(Some(LONG)).unwrap());
    assert_eq!(a.recv().unwrap(), 5);
    // The second message may already sit in this end's buffer: poll must still see it.
    assert!(a.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(a.recv().unwrap(), 6);
}

#[test]
fn bytes_round_trip_unchanged() {
    let (a, b) = Pipe::duplex::<()>().unwrap();
    a.send_bytes(b"\x00raw\xffbytes").unwrap();
    a.send_bytes(b"").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"\x00raw\xffbytes");
    assert_eq!(b.recv_bytes_timeout(LONG).unwrap(), b"");
}

#[test]
fn a_simplex_pipe_goes_one_way() {
    let (rx, tx) = Pipe::simplex::<u8>().unwrap();
    assert!(rx.readable() && !rx.writable() && tx.writable() && !tx.readable());
    assert!(matches!(rx.send(1), Err(PipeError::WrongDirection(_))));
    assert!(matches!(tx.recv(), Err(PipeError::WrongDirection(_))));
    tx.send(9).unwrap();
    assert_eq!(rx.recv().unwrap(), 9);
}

fn answer_second((_first, second): (Connection<u32>, Connection<u32>)) {
    second.send(2).unwrap();
}

#[test]
fn wait_returns_the_connections_with_something_to_read() {
    let (a1, b1) = Pipe::duplex::<u32>().unwrap();
    let (a2, b2) = Pipe::duplex::<u32>().unwrap();
    assert!(wait(&[&a1, &a2], Some(Duration::ZERO)).unwrap().is_empty());
    let mut p = Process::new(answer_second, (b1, b2));
    p.start().unwrap();
    let ready = wait(&[&a1, &a2], Some(LONG)).unwrap();
    assert!(ready.contains(&1), "{ready:?}");
    assert_eq!(a2.recv().unwrap(), 2);
    p.join().unwrap();
}

#[test]
fn a_connection_travels_inside_a_message() {
    let (a, b) = Pipe::duplex::<Connection<String>>().unwrap();
    let (x, y) = Pipe::duplex::<String>().unwrap();
    a.send(y).unwrap();
    let y = b.recv().unwrap();
    y.send("through a passed end".to_string()).unwrap();
    assert_eq!(x.recv().unwrap(), "through a passed end");
}
