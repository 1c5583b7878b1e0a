//! A manager on TCP with an authkey: clients in other processes connect with the key;
//! a wrong key is refused with a clear error, and the server goes on.

use std::io::{Read, Write};
use std::net::TcpStream;

use multiproc::manager::{Address, DictProxy};
use multiproc::{Manager, ManagerError, Process};

multiproc::test_init!();

fn client(args: (String, Vec<u8>)) {
    let (address, key) = args;
    let m = Manager::connect(&address.parse().unwrap(), key).unwrap();
    let d: DictProxy<String, u32> = m.lookup("shared").unwrap();
    d.insert("client".into(), std::process::id()).unwrap();
}

fn wrong_client(args: (String, Vec<u8>)) {
    let (address, key) = args;
    match Manager::connect(&address.parse().unwrap(), key) {
        Err(ManagerError::AuthenticationFailed { .. }) => std::process::exit(0),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => std::process::exit(3),
    }
}

fn tcp_server() -> Manager {
    Manager::builder().tcp("127.0.0.1:0".parse().unwrap()).authkey(b"right key").start().unwrap()
}

#[test]
fn a_client_with_the_key_uses_published_objects() {
    let m = tcp_server();
    assert!(matches!(m.address(), Address::Tcp(a) if a.port() != 0));
    let d = m.dict::<String, u32>().unwrap();
    m.publish("shared", &d).unwrap();
    let mut p = Process::new(client, (m.address().to_string(), b"right key".to_vec()));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(d.get("client").unwrap(), p.pid());
    assert!(matches!(m.lookup::<DictProxy<u8, u8>>("shared"), Err(ManagerError::WrongType { .. })));
    assert!(matches!(m.lookup::<DictProxy<String, u32>>("nothing"), Err(ManagerError::UnknownName(_))));
}

#[test]
fn a_wrong_key_is_refused_and_the_server_goes_on() {
    let m = tcp_server();
    let mut p = Process::new(wrong_client, (m.address().to_string(), b"wrong key".to_vec()));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    let e = Manager::connect(m.address(), b"guess").unwrap_err();
    assert!(e.to_string().contains("refused the authkey"), "{e}");
    // Still serving.
    let v = m.value(5u8).unwrap();
    assert_eq!(v.get().unwrap(), 5);
}

#[test]
fn garbage_before_authentication_closes_the_connection() {
    let m = tcp_server();
    let Address::Tcp(addr) = m.address().clone() else { unreachable!() };
    for garbage in [&b"GET / HTTP/1.0\r\n\r\n"[..], &[0xff; 64][..], &[10, 0, 0, 0, 0xE1, 0, 0, 0, 1][..]] {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut challenge = [0u8; 64];
        let _ = s.read(&mut challenge).unwrap();
        s.write_all(garbage).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        // The server says nothing more (no verdict for garbage) and closes.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.len() < 64, "served {} bytes to an unauthenticated peer", rest.len());
    }
    let l = m.list::<u8>().unwrap();
    l.push(1).unwrap();
    assert_eq!(l.to_vec().unwrap(), [1]);
}
