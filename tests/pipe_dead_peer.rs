//! A peer that exits or is killed is an error at `recv` (and `send`), never a hang.

use multiproc::{Connection, Pipe, PipeError, Process};

multiproc::test_init!();

fn exit_at_once(_conn: Connection<u32>) {}

fn wait_to_be_killed(conn: Connection<u32>) {
    conn.send(1).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(600));
}

#[test]
fn recv_from_a_peer_that_exited_is_closed() {
    let (a, b) = Pipe::duplex::<u32>().unwrap();
    let mut p = Process::new(exit_at_once, b);
    p.start().unwrap();
    assert!(matches!(a.recv(), Err(PipeError::Closed)));
    p.join().unwrap();
    assert!(matches!(a.send(5), Err(PipeError::Closed)));
}

#[test]
fn recv_from_a_killed_peer_is_closed() {
    let (a, b) = Pipe::duplex::<u32>().unwrap();
    let mut p = Process::new(wait_to_be_killed, b);
    p.start().unwrap();
    assert_eq!(a.recv().unwrap(), 1);
    p.kill().unwrap();
    assert!(matches!(a.recv(), Err(PipeError::Closed)));
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-9));
}

#[test]
fn a_dropped_local_end_is_closed_too() {
    let (a, b) = Pipe::duplex::<u32>().unwrap();
    drop(b);
    assert!(matches!(a.recv(), Err(PipeError::Closed)));
    assert!(a.poll(Some(std::time::Duration::ZERO)).unwrap(), "end of stream counts as readable");
}
