//! `Connection::recv_bytes_into` (Python's): a message fills the caller's buffer; one too
//! large for it is taken whole into `BufferTooShort`, and the next message is intact.

use multiproc::{Connection, Pipe, PipeError, Process};

multiproc::test_init!();

fn send_three(conn: Connection<()>) {
    conn.send_bytes(b"short").unwrap();
    conn.send_bytes(&[9u8; 100]).unwrap();
    conn.send_bytes(b"after").unwrap();
}

#[test]
fn messages_from_another_process_fill_the_buffer_or_come_back_whole() {
    let (ours, theirs) = Pipe::duplex::<()>().unwrap();
    let mut p = Process::new(send_three, theirs);
    p.start().unwrap();
    let mut buf = [0u8; 10];
    let n = ours.recv_bytes_into(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"short");
    match ours.recv_bytes_into(&mut buf) {
        Err(PipeError::BufferTooShort { message, capacity }) => assert_eq!((message, capacity), (vec![9u8; 100], 10)),
        other => panic!("expected BufferTooShort, got {other:?}"),
    }
    assert_eq!(&buf[..5], b"short", "the buffer is left as it was");
    let n = ours.recv_bytes_into(&mut buf[2..]).unwrap();
    assert_eq!(&buf[2..2 + n], b"after");
    p.join().unwrap();
    assert!(matches!(ours.recv_bytes_into(&mut buf), Err(PipeError::Closed)));
}
