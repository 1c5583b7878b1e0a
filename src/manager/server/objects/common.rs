//! What every kind's file shares, below them and the dispatch in `mod.rs`: the peer an
//! operation came from, a handler's context, blocking waits that notice a client hanging
//! up, and the pieces replies are written with.

use std::os::fd::BorrowedFd;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::held;
use crate::manager::protocol::{Kind, RemoteError, Wait};
use crate::spawn::identity::SameBuild;
use crate::sys;

/// A blocked operation checks this often whether its client hung up, so a client killed
/// while waiting does not keep a server thread (and its references) forever.
const HANGUP_CHECK: Duration = Duration::from_millis(100);

/// Who holds a lock: a session (one client process) and a thread in it.
pub(crate) type Owner = ([u8; 16], u64);

/// The connection an operation came from.
pub(crate) struct Peer<'a> {
    pub(crate) session: [u8; 16],
    pub(crate) same_build: Option<SameBuild>,
    /// The client's socket, polled while blocked: it turns readable when the client
    /// hangs up (a client sends nothing else while it waits for a reply).
    pub(crate) fd: Option<BorrowedFd<'a>>,
}

impl Peer<'_> {
    pub(super) fn gone(&self) -> bool {
        self.fd
            .is_some_and(|fd| sys::fd::wait_ready(fd, sys::fd::Readiness::Read, Some(Duration::ZERO)).unwrap_or(true))
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv` while `blocked` holds, for at most `wait`. Returns the guard and whether
/// the condition cleared; `PeerGone` if the client hung up meanwhile.
pub(super) fn wait_while<'g, T>(
    cv: &Condvar,
    mut g: MutexGuard<'g, T>,
    wait: Wait,
    peer: &Peer<'_>,
    mut blocked: impl FnMut(&mut T) -> bool,
) -> Result<(MutexGuard<'g, T>, bool), RemoteError> {
    let start = Instant::now();
    let deadline = match wait {
        Wait::No => Some(start),
        Wait::For(d) => Some(start.checked_add(d).unwrap_or(start + Duration::from_secs(1 << 40))),
        Wait::Forever => None,
    };
    loop {
        if !blocked(&mut g) {
            return Ok((g, true));
        }
        let now = Instant::now();
        let slice = match deadline {
            Some(d) if d <= now => return Ok((g, false)),
            Some(d) => (d - now).min(HANGUP_CHECK),
            None => HANGUP_CHECK,
        };
        g = cv.wait_timeout(g, slice).unwrap_or_else(|e| e.into_inner()).0;
        if peer.gone() {
            return Err(RemoteError::PeerGone);
        }
    }
}

/// A state behind a lock, with a condition variable signalled on every change.
#[derive(Debug, Default)]
pub(super) struct Guarded<T> {
    pub(super) state: Mutex<T>,
    pub(super) changed: Condvar,
}

impl<T> Guarded<T> {
    pub(super) fn new(t: T) -> Guarded<T> {
        Guarded { state: Mutex::new(t), changed: Condvar::new() }
    }
}

/// What the connection does after an operation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Done {
    /// Send the reply in `out`.
    Reply,
    /// Send the reply; if it cannot be sent, put the item it carries back at the front of
    /// the queue (a client that died waiting for an item must not lose it).
    ReplyOrRequeue,
}

/// What every handler gets besides its object's state and its operation.
pub(super) struct Ctx<'c, 'p> {
    pub(super) id: u64,
    pub(super) kind: Kind,
    pub(super) peer: &'c Peer<'p>,
    /// Where a container reports the values it stores and lets go of.
    pub(super) held: &'c dyn held::Held,
    /// The reply payload.
    pub(super) out: &'c mut Vec<u8>,
}

impl Ctx<'_, '_> {
    /// The operation is not one this object's kind has.
    pub(super) fn wrong(&self, target: &str) -> RemoteError {
        RemoteError::WrongType { id: self.id, expected: target.into(), found: self.kind.name().into() }
    }
}

pub(super) fn put_varint(out: &mut Vec<u8>, n: u64) {
    crate::wire::codec::encode_into(&n, out).expect("a u64 always encodes");
}

pub(super) fn put_option(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            out.extend_from_slice(b);
        }
    }
}

pub(super) fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.push(b as u8);
}

pub(super) fn put_seq<'a>(out: &mut Vec<u8>, n: usize, items: impl Iterator<Item = &'a [u8]>) {
    put_varint(out, n as u64);
    for b in items {
        out.extend_from_slice(b);
    }
}

pub(super) fn misuse(m: impl Into<String>) -> RemoteError {
    RemoteError::Misuse(m.into())
}
