//! An authenticated client sending malformed, cut, oversized or meaningless requests:
//! each gets an error reply or a closed connection, and the server keeps serving.
//!
//! The client here speaks the wire protocol by hand (frames: `u32` length, kind byte,
//! fd count, two zero bytes, payload; authentication: HMAC-SHA256 challenges).

use std::io::{Read, Write};
use std::net::TcpStream;

use hmac::{Hmac, Mac};
use multiproc::manager::Address;
use multiproc::{Manager, ManagerError};
use sha2::Sha256;

multiproc::test_init!();

const KEY: &[u8] = b"bad input key";
const OK: u8 = 0xF0;
const ERR: u8 = 0xF1;
const CREATE: u8 = 0x01;
const D_LEN: u8 = 0x25;
const S_LEN: u8 = 0x44;
const DICT: u8 = 1;

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&[kind, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 8];
    s.read_exact(&mut h).ok()?;
    let mut p = vec![0u8; u32::from_le_bytes(h[..4].try_into().unwrap()) as usize];
    s.read_exact(&mut p).ok()?;
    Some((h[4], p))
}

fn mac(label: &[u8], nonce: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(KEY).unwrap();
    m.update(label);
    m.update(nonce);
    m.finalize().into_bytes().to_vec()
}

/// Authenticates and opens a session by hand.
fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let (_, challenge) = read_frame(&mut s).unwrap();
    // magic (8 bytes), protocol (varint 1), nonce (32 bytes)
    let nonce = &challenge[9..41];
    let mut answer = mac(b"multiproc-manager client", nonce);
    answer.extend_from_slice(&[7u8; 32]);
    s.write_all(&frame(0xE1, &answer)).unwrap();
    let (_, verdict) = read_frame(&mut s).unwrap();
    assert_eq!(verdict[0], 0, "welcome");
    assert_eq!(&verdict[1..33], &mac(b"multiproc-manager server", &[7u8; 32])[..]);
    // protocol 2, fingerprint 0 (another build), no session, pid 1
    s.write_all(&frame(0xE3, &[2, 0, 0, 1])).unwrap();
    let (_, ready) = read_frame(&mut s).unwrap();
    assert_eq!(ready[0], 0, "session ready");
    s
}

fn request(s: &mut TcpStream, kind: u8, payload: &[u8]) -> Option<(u8, Vec<u8>)> {
    s.write_all(&frame(kind, payload)).ok()?;
    read_frame(s)
}

fn create_dict(s: &mut TcpStream) -> u64 {
    let types = b"dict<u8, u8>";
    let mut p = vec![DICT];
    p.extend_from_slice(&(types.len() as u32).to_le_bytes());
    p.extend_from_slice(types);
    let (kind, reply) = request(s, CREATE, &p).unwrap();
    assert_eq!(kind, OK);
    reply[0] as u64 // a small varint
}

fn server() -> (Manager, std::net::SocketAddr) {
    let m = Manager::builder().tcp("127.0.0.1:0".parse().unwrap()).authkey(KEY).max_request(4096).start().unwrap();
    let Address::Tcp(a) = m.address().clone() else { unreachable!() };
    (m, a)
}

#[test]
fn malformed_requests_get_error_replies_on_a_live_connection() {
    let (m, addr) = server();
    let mut s = connect(addr);
    let id = create_dict(&mut s);
    let cases: Vec<(u8, Vec<u8>)> = vec![
        (0x77, vec![]),                                                                // unknown operation
        (D_LEN, vec![1, 2, 3]),                                                        // cut object id
        (D_LEN, [id.to_le_bytes().to_vec(), vec![9]].concat()),                        // trailing byte
        (D_LEN, 999u64.to_le_bytes().to_vec()),                                        // unknown object
        (S_LEN, id.to_le_bytes().to_vec()),                                            // a list operation on a dict
        (0x45, [id.to_le_bytes().to_vec(), u32::MAX.to_le_bytes().to_vec()].concat()), // lying count
        (CREATE, vec![99]),                                                            // unknown kind
        (0x2B, [id.to_le_bytes().to_vec(), vec![0; 4], vec![1; 16]].concat()),         // modify from another build
    ];
    for (kind, payload) in cases {
        let (k, reply) = request(&mut s, kind, &payload).expect("the connection stays open");
        assert_eq!(k, ERR, "request {kind:#x} {payload:?} got {reply:?}");
    }
    let (k, reply) = request(&mut s, D_LEN, &id.to_le_bytes()).unwrap();
    assert_eq!((k, reply), (OK, vec![0]));
    let d = m.dict::<u8, u8>().unwrap();
    assert!(d.is_empty().unwrap());
}

#[test]
fn cut_and_oversized_frames_close_only_their_connection() {
    let (m, addr) = server();
    // A frame cut short by the client hanging up.
    let mut s = connect(addr);
    s.write_all(&frame(D_LEN, &[0; 8])[..10]).unwrap();
    drop(s);
    // A frame above the server's limit: an error, then the connection closes.
    let mut s = connect(addr);
    s.write_all(&(1u32 << 20).to_le_bytes()).unwrap();
    s.write_all(&[D_LEN, 0, 0, 0]).unwrap();
    let (k, _) = read_frame(&mut s).unwrap();
    assert_eq!(k, ERR);
    assert!(read_frame(&mut s).is_none());
    // Bad reserved header bytes.
    let mut s = connect(addr);
    s.write_all(&[8, 0, 0, 0, D_LEN, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    assert!(read_frame(&mut s).is_none());
    // A client of this library sees its oversized request refused before sending.
    let l = m.list::<Vec<u8>>().unwrap();
    assert!(matches!(l.push(vec![0; 8192]), Err(ManagerError::TooLarge { .. })));
    l.push(vec![1; 16]).unwrap();
    assert_eq!(l.len().unwrap(), 1);
}
