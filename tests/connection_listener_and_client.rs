//! `connection::Listener` and `connection::Client` outside any manager, as Python's
//! `multiprocessing.connection`: a process connects to an address it was only told, over
//! a Unix socket (abstract or a file) or a TCP socket, proving it knows the key; a wrong key is refused on both sides.

use multiproc::connection::{Address, Client, ConnectionError, Listener};
use multiproc::{Process, Queue};

multiproc::test_init!();

const KEY: &[u8] = b"shared secret";

/// Connects to `address`, sends a greeting and echoes back one message, doubled.
fn client((address, key): (String, Vec<u8>)) {
    let conn = Client::connect::<String>(&address.parse().unwrap(), Some(&key)).unwrap();
    conn.send(format!("hello from {}", std::process::id())).unwrap();
    let got = conn.recv().unwrap();
    conn.send(got.repeat(2)).unwrap();
}

fn talk_through(address: Address) {
    let listener = Listener::bind(&address, Some(KEY)).unwrap();
    let mut p = Process::new(client, (listener.address().to_string(), KEY.to_vec()));
    p.start().unwrap();
    let conn = listener.accept::<String>().unwrap();
    assert_eq!(conn.recv().unwrap(), format!("hello from {}", p.pid().unwrap()));
    conn.send("ab".to_string()).unwrap();
    assert_eq!(conn.recv().unwrap(), "abab");
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn a_process_connects_over_an_abstract_unix_socket() {
    talk_through(format!("@multiproc-test-listener-{}", std::process::id()).parse().unwrap());
}

#[test]
fn a_process_connects_over_a_unix_socket_file_which_goes_with_its_listener() {
    let path = std::env::temp_dir().join(format!("multiproc-test-listener-{}.sock", std::process::id()));
    talk_through(Address::Path(path.clone()));
    assert!(!path.exists(), "the listener removed its socket file");
}

#[test]
fn a_process_connects_over_tcp() {
    talk_through("127.0.0.1:0".parse().unwrap());
}

fn wrong_key((address, out): (String, Queue<String>)) {
    let r = Client::connect::<String>(&address.parse().unwrap(), Some(b"guess"));
    out.put(match r {
        Err(ConnectionError::AuthenticationFailed) => "refused".into(),
        other => format!("{other:?}"),
    })
    .unwrap();
}

#[test]
fn a_client_with_the_wrong_key_is_refused_on_both_sides() {
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap(), Some(KEY)).unwrap();
    let out = Queue::new().unwrap();
    let mut p = Process::new(wrong_key, (listener.address().to_string(), out.clone()));
    p.start().unwrap();
    assert!(matches!(listener.accept::<String>(), Err(ConnectionError::AuthenticationFailed)));
    assert_eq!(out.get().unwrap(), "refused");
    p.join().unwrap();
}

fn no_key(address: String) {
    let conn = Client::connect::<u32>(&address.parse().unwrap(), None).unwrap();
    conn.send(7).unwrap();
}

#[test]
fn without_a_key_anyone_who_reaches_the_address_is_let_in() {
    let listener =
        Listener::bind(&format!("@multiproc-test-open-{}", std::process::id()).parse().unwrap(), None).unwrap();
    let mut p = Process::new(no_key, listener.address().to_string());
    p.start().unwrap();
    assert_eq!(listener.accept::<u32>().unwrap().recv().unwrap(), 7);
    p.join().unwrap();
}
