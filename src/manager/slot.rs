//! A request/response slot in shared memory, beside a local connection, for quick reads.
//!
//! A read (`d[k]`) must wait for its answer, and over a socket that costs two sends, two
//! receives and the polls between them on each side. A process that makes many quick
//! calls on a local server opens a slot instead: a memfd the client creates, seals to its
//! size and passes over its connection. The client writes one request in it and flips a
//! state word; a server thread that spins on that word (then sleeps on it as a futex)
//! serves it and writes the reply. No syscall happens while both sides are busy.
//!
//! Only read-only requests go through the slot (they can be repeated safely, so a reply
//! too large for the slot is simply asked again over the socket), and only when no
//! posted write is in flight on the socket: the socket's round trip orders them first.
//! Either side may die at any time: the server copies each request out before decoding
//! it and never trusts a length, and both sides wait with a timeout and then look at the
//! socket, which ends when the peer dies.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::protocol::{Travel, travel};
use crate::sys;
use crate::sys::shm::Mapping;

/// The whole slot: a header line, then the request or the reply.
pub(crate) const SLOT_LEN: usize = 64 * 1024;
const DATA: usize = 64;
/// The largest request or reply the slot carries.
pub(crate) const SLOT_CAPACITY: usize = SLOT_LEN - DATA;

// Header offsets.
const STATE: usize = 0;
const SERVER_SLEEPS: usize = 4;
const CLIENT_SLEEPS: usize = 8;
const LEN: usize = 16;
const KIND: usize = 20;

// States of the state word.
const FREE: u32 = 0;
const REQUEST: u32 = 1;
const REPLY: u32 = 2;
/// Written by the server when the connection ended, to end its own thread's wait.
const CLOSED: u32 = 3;

/// Reply kind: the reply did not fit; ask again over the socket.
pub(crate) const KIND_TOO_BIG: u8 = crate::wire::kinds::MANAGER_TOO_BIG;

/// How long each side spins on the state word before sleeping on it.
const SPIN: Duration = Duration::from_micros(50);
/// How often a waiting client checks that the server is still there (a dead server
/// does not touch the slot; its socket ends).
const CLIENT_CHECK_EVERY: Duration = Duration::from_millis(50);
/// The same for the server's thread, which its connection's end wakes at once anyway.
const SERVER_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Requests that may go through a slot: they change nothing and never wait.
pub(crate) fn eligible(code: u8) -> bool {
    travel(code) == Travel::Read
}

fn state(m: &Mapping) -> &AtomicU32 {
    m.atomic_u32(STATE)
}

/// Spins, then sleeps, until the state word is `want`, or `gone()` (asked before each
/// sleep of at most `check_every`) says the peer is away.
/// Returns whether `word` became `want`.
fn wait_for(m: &Mapping, want: u32, sleeps_at: usize, check_every: Duration, gone: &mut dyn FnMut() -> bool) -> bool {
    let word = state(m);
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if word.load(Ordering::Acquire) == want {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= SPIN {
            break;
        }
        // A peer on this CPU needs it to answer.
        std::thread::yield_now();
    }
    let sleeps = m.atomic_u32(sleeps_at);
    let became = loop {
        sleeps.store(1, Ordering::SeqCst);
        let now = word.load(Ordering::SeqCst);
        if now == want {
            break true;
        }
        // After the load: a `close` that wrote CLOSED set its flag before.
        if gone() {
            break false;
        }
        let _ = sys::futex::wait(word, now, Some(check_every));
    };
    sleeps.store(0, Ordering::SeqCst);
    became
}

/// Sets the state word to `to` and wakes the other side if it sleeps.
fn publish(m: &Mapping, to: u32, other_sleeps_at: usize) {
    state(m).store(to, Ordering::SeqCst);
    if m.atomic_u32(other_sleeps_at).load(Ordering::SeqCst) != 0 {
        sys::futex::wake(state(m), 1);
    }
}

/// The client's end.
#[derive(Debug)]
pub(crate) struct ClientSlot {
    map: Mapping,
    fd: OwnedFd,
}

/// What a slot call gave.
pub(crate) enum SlotReply {
    /// The reply's kind and payload (in the buffer given).
    Done(u8),
    /// Too large for the slot: ask over the socket.
    TooBig,
    /// The server did not answer and its connection reads as ended.
    Lost,
}

impl ClientSlot {
    /// A new slot; [`fd`](Self::fd) is what the server needs.
    pub(crate) fn create() -> std::io::Result<ClientSlot> {
        let fd = sys::shm::memfd("multiproc-manager-slot", SLOT_LEN)?;
        let map = Mapping::new(fd.as_fd(), SLOT_LEN)?;
        Ok(ClientSlot { map, fd })
    }

    /// The memfd, to send to the server.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Sends request `code` with `payload` (at most [`SLOT_CAPACITY`] bytes) and waits
    /// for the reply, which replaces the contents of `out`. `gone` is asked, while
    /// waiting long, whether the server's connection has ended.
    pub(crate) fn call(
        &self,
        code: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
        gone: &mut dyn FnMut() -> bool,
    ) -> SlotReply {
        let m = &self.map;
        m.write_pod::<u32>(LEN, payload.len() as u32);
        m.write_pod::<u8>(KIND, code);
        m.write_bytes(DATA, payload);
        publish(m, REQUEST, SERVER_SLEEPS);
        if !wait_for(m, REPLY, CLIENT_SLEEPS, CLIENT_CHECK_EVERY, gone) {
            return SlotReply::Lost;
        }
        let kind = m.read_pod::<u8>(KIND);
        let len = (m.read_pod::<u32>(LEN) as usize).min(SLOT_CAPACITY);
        out.clear();
        out.resize(len, 0);
        m.read_bytes(DATA, out);
        state(m).store(FREE, Ordering::Release);
        if kind == KIND_TOO_BIG { SlotReply::TooBig } else { SlotReply::Done(kind) }
    }
}

/// The server's end: the mapping and the flag its connection sets when it ends.
#[derive(Debug)]
pub(crate) struct ServerSlot {
    map: Mapping,
    closed: AtomicBool,
}

impl ServerSlot {
    /// Maps a slot a client sent, after checking it is one (a sealed size, exactly ours).
    pub(crate) fn open(fd: &OwnedFd) -> Result<Arc<ServerSlot>, String> {
        if !sys::shm::is_size_sealed(fd.as_fd()) {
            return Err("the slot's memory is not sealed to its size".into());
        }
        match sys::shm::size_of_fd(fd.as_fd()) {
            Ok(SLOT_LEN) => {}
            Ok(n) => return Err(format!("the slot is {n} bytes, not {SLOT_LEN}")),
            Err(e) => return Err(e.to_string()),
        }
        let map = Mapping::new(fd.as_fd(), SLOT_LEN).map_err(|e| e.to_string())?;
        Ok(Arc::new(ServerSlot { map, closed: AtomicBool::new(false) }))
    }

    /// Tells the serving thread its connection ended. The client is gone or has
    /// dropped the connection, so the state word is the server's to change now: the
    /// change makes a wait about to start return at once.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        state(&self.map).store(CLOSED, Ordering::SeqCst);
        sys::futex::wake_all(state(&self.map));
    }

    /// Waits for the next request and copies it into `req`; returns its code, or `None`
    /// once the connection has ended.
    pub(crate) fn next(&self, req: &mut Vec<u8>) -> Option<u8> {
        let m = &self.map;
        let mut gone = || self.closed.load(Ordering::SeqCst);
        if !wait_for(m, REQUEST, SERVER_SLEEPS, SERVER_CHECK_EVERY, &mut gone) || gone() {
            return None;
        }
        let code = m.read_pod::<u8>(KIND);
        // The client owns its length word: never trust it beyond the slot.
        let len = (m.read_pod::<u32>(LEN) as usize).min(SLOT_CAPACITY);
        req.clear();
        req.resize(len, 0);
        m.read_bytes(DATA, req);
        Some(code)
    }

    /// Writes the reply of kind `kind` (or says it is too big) and hands the slot back.
    pub(crate) fn reply(&self, kind: u8, payload: &[u8]) {
        let m = &self.map;
        if payload.len() > SLOT_CAPACITY {
            m.write_pod::<u8>(KIND, KIND_TOO_BIG);
            m.write_pod::<u32>(LEN, 0);
        } else {
            m.write_pod::<u8>(KIND, kind);
            m.write_pod::<u32>(LEN, payload.len() as u32);
            m.write_bytes(DATA, payload);
        }
        publish(m, REPLY, CLIENT_SLEEPS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (ClientSlot, Arc<ServerSlot>) {
        let c = ClientSlot::create().unwrap();
        let s = ServerSlot::open(c.fd()).unwrap();
        (c, s)
    }

    #[test]
    fn a_request_and_its_reply_cross_and_a_large_reply_is_refused() {
        let (c, s) = pair();
        let server = std::thread::spawn(move || {
            let mut req = Vec::new();
            while let Some(code) = s.next(&mut req) {
                if code == 1 {
                    s.reply(KIND_OK_TEST, &vec![7u8; SLOT_CAPACITY + 1]);
                } else {
                    req.reverse();
                    s.reply(code, &req);
                }
            }
        });
        let mut out = Vec::new();
        let mut alive = || false;
        for i in 0..1000u32 {
            let payload = i.to_le_bytes();
            assert!(matches!(c.call(9, &payload, &mut out, &mut alive), SlotReply::Done(9)));
            let mut expected = payload.to_vec();
            expected.reverse();
            assert_eq!(out, expected);
        }
        assert!(matches!(c.call(1, &[], &mut out, &mut alive), SlotReply::TooBig));
        drop(c);
        // The server's side ends only when told its connection ended.
        assert!(!server.is_finished());
    }

    const KIND_OK_TEST: u8 = 0x55;

    #[test]
    fn each_side_stops_waiting_when_the_other_is_gone() {
        let (c, s) = pair();
        let mut out = Vec::new();
        let mut gone = || true;
        assert!(matches!(c.call(9, b"x", &mut out, &mut gone), SlotReply::Lost));
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut req = Vec::new();
                // The request left above is served first, then the close ends the wait.
                let first = s.next(&mut req);
                s.reply(9, &[]);
                (first, s.next(&mut req))
            })
        };
        // Wait until the first request was answered, so the close hits the second wait.
        let mut never = || false;
        let _ = wait_for(&c.map, REPLY, CLIENT_SLEEPS, CLIENT_CHECK_EVERY, &mut never);
        s.close();
        assert_eq!(waiter.join().unwrap(), (Some(9), None));
    }

    #[test]
    fn memory_of_the_wrong_size_or_unsealed_is_refused() {
        let small = sys::shm::memfd("t", SLOT_LEN / 2).unwrap();
        assert!(ServerSlot::open(&small).unwrap_err().contains("bytes"));
        let unsealed = sys::mem::memfd_with(&[&vec![0u8; SLOT_LEN]]).unwrap();
        assert!(ServerSlot::open(&unsealed).unwrap_err().contains("sealed"));
    }
}
