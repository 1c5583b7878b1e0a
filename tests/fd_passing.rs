//! Any owned descriptor — a file, a TCP stream — sent as a Process argument or in a message.

use std::io::{Read, Seek, Write};
use std::net::{TcpListener, TcpStream};

use multiproc::{Fd, Pipe, Process, Queue};

multiproc::test_init!();

fn append(fd: Fd) {
    fd.into_file().write_all(b" world").unwrap();
}

#[test]
fn a_file_passed_as_an_argument_is_written_by_the_child() {
    let mut f = tempfile();
    f.write_all(b"hello").unwrap();
    let mut p = Process::new(append, Fd::from(f.try_clone().unwrap()));
    p.start().unwrap();
    p.join().unwrap();
    let mut s = String::new();
    f.rewind().unwrap();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "hello world");
}

fn tempfile() -> std::fs::File {
    let path =
        std::env::temp_dir().join(format!("multiproc-fd-{}-{:?}", std::process::id(), std::thread::current().id()));
    let f = std::fs::File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

fn serve(q: Queue<Fd>) {
    let mut s = q.get().unwrap().into_tcp_stream();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    buf.make_ascii_uppercase();
    s.write_all(&buf).unwrap();
}

#[test]
fn an_accepted_tcp_connection_sent_on_a_queue_is_served_by_the_child() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let q = Queue::new().unwrap();
    let mut p = Process::new(serve, q.clone());
    p.start().unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (conn, _) = listener.accept().unwrap();
    q.put(Fd::from(conn)).unwrap(); // our copy closes here; the child's stays
    client.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"HELLO");
    p.join().unwrap();
}

#[test]
fn a_descriptor_goes_through_a_pipe() {
    let (a, b) = Pipe::duplex::<Fd>().unwrap();
    let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
    a.send(Fd::from(x)).unwrap();
    let mut x = b.recv().unwrap().into_unix_stream();
    x.write_all(b"!").unwrap();
    let mut one = [0u8; 1];
    (&y).read_exact(&mut one).unwrap();
    assert_eq!(&one, b"!");
}
