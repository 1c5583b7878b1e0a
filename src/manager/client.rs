//! A process's side of a manager: authenticated connections, one request at a time each.
//!
//! A process has one [`Client`] per server (shared by every proxy it holds) with a small
//! pool of connections: a call takes an idle connection (or opens one), sends its
//! request, reads the reply on the calling thread and puts the connection back. So a
//! call is one round trip with no thread hop, and a thread blocked in `queue.get()` does
//! not stop another thread's calls. All the connections of a process form one session
//! on the server, which counts the process's references. After a few reads on a local
//! server, the primary connection gets a shared-memory slot for read-only requests
//! (see `slot`): those then cost no syscall while both sides run.
//!
//! Invariant: no user code runs while a connection is held. A call encodes its request
//! into a buffer before taking a connection and decodes the reply after giving it back,
//! because a proxy inside a value makes calls of its own on this client while it encodes
//! (asking for a transit token) or decodes (adopting it).

use std::cell::Cell;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::auth::{self, AuthError};
use super::error::ManagerError;
use super::protocol::{
    KIND_ERR, KIND_OK, KIND_POSTED_ERR, KIND_SESSION_HELLO, KIND_SESSION_READY, KIND_SLOT_OPEN, MANAGER_PROTOCOL,
    RemoteError, SessionHello, SessionReady, Travel, Writer, registry as op, travel,
};
use super::slot::{self, ClientSlot, SLOT_CAPACITY, SlotReply};
use crate::address::{self, Address};
use crate::wire::codec;
use crate::wire::frame::{Channel, REPLY_SPIN};
use crate::wire::{CodecError, FrameError};

/// How long connecting and authenticating may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A process's connections to one server.
pub(crate) struct Client {
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
    session: [u8; 16],
    server_pid: u32,
    /// The run of the server this client talks to (see `SessionReady`).
    pub(crate) server: [u8; 16],
    primary: Mutex<Primary>,
    /// Idle connections for calls that may wait in the server.
    spare: Mutex<Vec<Channel>>,
}

/// The connection quick calls share, in order.
struct Primary {
    ch: Option<Channel>,
    /// Requests were posted since the last reply read on it.
    posted: bool,
    /// Posts since the socket was last read for failure reports.
    unchecked: u32,
    /// The shared-memory slot for quick reads, once opened (local servers only).
    slot: Option<ClientSlot>,
    /// Reads made over the socket so far; a slot is opened after a few.
    socket_reads: u32,
    /// The server refused a slot (or this is a TCP connection): never ask again.
    no_slot: bool,
}

impl Primary {
    fn new(ch: Channel, address: &Address) -> Primary {
        Primary {
            ch: Some(ch),
            posted: false,
            unchecked: 0,
            slot: None,
            socket_reads: 0,
            no_slot: !matches!(address, Address::Local(_)),
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("address", &self.address).field("server_pid", &self.server_pid).finish()
    }
}

type Registry = Mutex<HashMap<(Address, Vec<u8>), Weak<Client>>>;

fn clients() -> &'static Registry {
    static CLIENTS: OnceLock<Registry> = OnceLock::new();
    CLIENTS.get_or_init(Registry::default)
}

/// An authenticated connection that has joined a session.
struct Opened {
    ch: Channel,
    session: [u8; 16],
    server_pid: u32,
    server: [u8; 16],
}

/// Opens and authenticates one connection, joining `session` or starting one.
fn open(address: &Address, authkey: &[u8], session: Option<[u8; 16]>) -> Result<Opened, ManagerError> {
    let sock: OwnedFd = address::connect(address, CONNECT_TIMEOUT)
        .map_err(|source| ManagerError::Connect { address: address.clone(), source })?;
    let mut ch = Channel::new(sock, auth::AUTH_MAX_FRAME);
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let lost = |source| ManagerError::Disconnected { address: address.clone(), source };
    auth::answer(&mut ch, authkey, deadline).map_err(|e| match e {
        AuthError::Refused => ManagerError::AuthenticationFailed { address: address.clone() },
        AuthError::ServerUnproven => ManagerError::ServerNotAuthenticated { address: address.clone() },
        AuthError::Protocol(reason) => ManagerError::Handshake { address: address.clone(), reason },
        AuthError::Frame(e) => lost(e),
    })?;
    let hello = SessionHello {
        protocol: MANAGER_PROTOCOL,
        fingerprint: crate::spawn::identity::fingerprint(),
        session,
        pid: std::process::id(),
    };
    ch.writer.queue(KIND_SESSION_HELLO, &hello).map_err(lost)?;
    ch.writer.flush(Some(deadline)).map_err(lost)?;
    let frame = ch.recv(Some(deadline)).map_err(lost)?;
    if frame.kind != KIND_SESSION_READY {
        return Err(ManagerError::Handshake {
            address: address.clone(),
            reason: format!("expected the session reply, got frame kind {:#04x}", frame.kind),
        });
    }
    let ready: SessionReady =
        frame.decode().map_err(|e| ManagerError::Handshake { address: address.clone(), reason: e.to_string() })?;
    match ready {
        SessionReady::Ready { session, max_request, server_pid, server } => {
            ch.set_max_frame(max_request);
            Ok(Opened { ch, session, server_pid, server })
        }
        SessionReady::Refused(reason) => Err(ManagerError::Handshake { address: address.clone(), reason }),
    }
}

impl Client {
    /// This process's client of the server at `address`.
    ///
    /// With `server` (a received proxy names the run of the server it belongs to), a
    /// client of that run is reused without asking; otherwise (a new `Manager`) one
    /// connection is opened to learn which run listens now. A client of an earlier run at
    /// the same address (a manager shut down and started again there) is never reused:
    /// its session is gone and its object ids mean other objects. A proxy of a run that
    /// no longer listens is an error.
    pub(crate) fn shared(
        address: &Address,
        authkey: &[u8],
        server: Option<[u8; 16]>,
    ) -> Result<Arc<Client>, ManagerError> {
        let key = (address.clone(), authkey.to_vec());
        let mut reg = clients().lock().unwrap_or_else(|e| e.into_inner());
        let cached = reg.get(&key).and_then(Weak::upgrade);
        if let Some(c) = cached.as_ref().filter(|c| server == Some(c.server)) {
            return Ok(c.clone());
        }
        reg.retain(|_, w| w.strong_count() > 0);
        let opened = open(address, authkey, None)?;
        if server.is_some_and(|s| s != opened.server) {
            return Err(ManagerError::Handshake {
                address: address.clone(),
                reason: "the manager that sent this proxy is gone: another server listens at its address".into(),
            });
        }
        if let Some(c) = cached.filter(|c| c.server == opened.server) {
            // The same run: keep one session per process (the new connection just ends).
            return Ok(c);
        }
        let client = Arc::new(Client {
            address: address.clone(),
            authkey: authkey.to_vec(),
            session: opened.session,
            server_pid: opened.server_pid,
            server: opened.server,
            primary: Mutex::new(Primary::new(opened.ch, address)),
            spare: Mutex::new(Vec::new()),
        });
        reg.insert(key, Arc::downgrade(&client));
        Ok(client)
    }

    pub(crate) fn server_pid(&self) -> u32 {
        self.server_pid
    }

    /// The connection for quick calls, opening it again if it was lost.
    fn primary(&self) -> Result<MutexGuard<'_, Primary>, ManagerError> {
        let mut p = self.primary.lock().unwrap_or_else(|e| e.into_inner());
        if p.ch.is_none() {
            let ch = open(&self.address, &self.authkey, Some(self.session))?.ch;
            *p = Primary::new(ch, &self.address);
        }
        Ok(p)
    }

    fn take_spare(&self) -> Result<Channel, ManagerError> {
        if let Some(ch) = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(ch);
        }
        Ok(open(&self.address, &self.authkey, Some(self.session))?.ch)
    }

    fn lost(&self, source: FrameError) -> ManagerError {
        ManagerError::Disconnected { address: self.address.clone(), source }
    }

    /// A reply that is not what a request expects: the connection cannot be trusted.
    fn unexpected(&self, kind: u8) -> ManagerError {
        self.lost(FrameError::Malformed(format!("unexpected reply kind {kind:#04x}")))
    }

    /// The error an error reply carries.
    fn remote_error(&self, payload: &[u8]) -> ManagerError {
        match codec::decode::<RemoteError>(payload) {
            Ok(e) => ManagerError::from_remote(e),
            Err(e) => self.lost(FrameError::Malformed(format!("unreadable error reply: {e}"))),
        }
    }

    /// Queues an encoded request frame.
    fn send(&self, ch: &mut Channel, op: u8, req: &[u8], fds: &[OwnedFd]) -> Result<(), ManagerError> {
        match ch.writer.queue_parts(op, req, &[], fds) {
            Ok(()) => Ok(()),
            Err(FrameError::Oversized { len, max }) => Err(ManagerError::TooLarge { len, max }),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Sends the queued request and copies its OK reply's payload into `reply`, skipping
    /// the error reports of posted requests sent before it.
    fn round_trip(&self, ch: &mut Channel, reply: &mut Vec<u8>) -> Result<(), ManagerError> {
        ch.writer.flush(None).map_err(|e| self.lost(e))?;
        ch.reader.spin_fill(REPLY_SPIN, None);
        loop {
            let frame = ch.recv(None).map_err(|e| self.lost(e))?;
            return match frame.kind {
                KIND_OK => {
                    reply.clear();
                    reply.extend_from_slice(frame.payload);
                    Ok(())
                }
                KIND_ERR => Err(self.remote_error(frame.payload)),
                KIND_POSTED_ERR => {
                    report_posted(frame.payload);
                    continue;
                }
                k => Err(self.unexpected(k)),
            };
        }
    }

    /// One request and its reply: `write` builds the payload, `read` decodes an OK reply.
    ///
    /// Both run with no connection held: encoding a proxy asks the server for a transit
    /// token, and decoding one adopts it, each with a call of its own on this client.
    /// Quick requests share the process's primary connection, in order after its posted
    /// ones; requests that may wait in the server (a queue `get`, a lock, a barrier) go
    /// on a spare connection, once the posted requests are known to be applied.
    pub(crate) fn call<R>(
        &self,
        op: u8,
        write: impl FnOnce(&mut Writer<'_>) -> Result<(), CodecError>,
        read: impl FnOnce(&[u8]) -> Result<R, CodecError>,
    ) -> Result<R, ManagerError> {
        with_buffers(|req, reply| {
            let fds = encode(req, write)?;
            self.exchange(op, req, &fds, reply)?;
            read(reply).map_err(ManagerError::Codec)
        })
    }

    /// Sends an encoded request and leaves its OK reply's payload in `reply`; a
    /// connection is held only meanwhile.
    fn exchange(&self, op: u8, req: &[u8], fds: &[OwnedFd], reply: &mut Vec<u8>) -> Result<(), ManagerError> {
        if may_block(op) {
            return self.exchange_spare(op, req, fds, reply);
        }
        let mut p = self.primary()?;
        if slot::eligible(op) && !p.no_slot {
            if let Some(result) = self.exchange_slot(&mut p, op, req, fds, reply) {
                return result;
            }
            p.socket_reads = p.socket_reads.saturating_add(1);
        }
        let ch = p.ch.as_mut().expect("opened by primary()");
        self.send(ch, op, req, fds)?;
        let result = self.round_trip(ch, reply);
        match result {
            Err(ManagerError::Disconnected { .. }) => p.ch = None,
            _ => p.posted = false,
        }
        result
    }

    /// A request that may wait in the server, on a spare connection.
    fn exchange_spare(&self, op: u8, req: &[u8], fds: &[OwnedFd], reply: &mut Vec<u8>) -> Result<(), ManagerError> {
        self.sync()?;
        let mut ch = self.take_spare()?;
        self.send(&mut ch, op, req, fds)?;
        let result = self.round_trip(&mut ch, reply);
        if !matches!(result, Err(ManagerError::Disconnected { .. })) {
            self.spare.lock().unwrap_or_else(|e| e.into_inner()).push(ch);
        }
        result
    }

    /// A read-only request through the shared-memory slot, when one is open and no
    /// posted request is still in flight on the socket; `None`: ask over the socket.
    fn exchange_slot(
        &self,
        p: &mut Primary,
        op: u8,
        req: &[u8],
        fds: &[OwnedFd],
        reply: &mut Vec<u8>,
    ) -> Option<Result<(), ManagerError>> {
        if p.slot.is_none() && !p.posted && p.socket_reads >= SLOT_AFTER {
            self.open_slot(p);
        }
        let slot = p.slot.as_ref().filter(|_| !p.posted && fds.is_empty() && req.len() <= SLOT_CAPACITY)?;
        let ch = p.ch.as_ref().expect("opened by primary()");
        let mut gone = || {
            crate::sys::fd::wait_ready(ch.fd(), crate::sys::fd::Readiness::Read, Some(Duration::ZERO)).unwrap_or(true)
        };
        let result = match slot.call(op, req, reply, &mut gone) {
            SlotReply::Done(KIND_OK) => Ok(()),
            SlotReply::Done(KIND_ERR) => Err(self.remote_error(reply)),
            SlotReply::Done(k) => Err(self.unexpected(k)),
            SlotReply::TooBig => return None,
            SlotReply::Lost => Err(self.lost(FrameError::Closed)),
        };
        if matches!(result, Err(ManagerError::Disconnected { .. })) {
            p.ch = None;
            p.slot = None;
        }
        Some(result)
    }

    /// Opens a slot on the primary connection; on any refusal, reads stay on the socket.
    fn open_slot(&self, p: &mut Primary) {
        p.no_slot = true;
        let Ok(slot) = ClientSlot::create() else { return };
        let Some(ch) = p.ch.as_mut() else { return };
        if ch.writer.queue_parts(KIND_SLOT_OPEN, &[], &[], std::slice::from_ref(slot.fd())).is_err() {
            return;
        }
        match self.round_trip(ch, &mut Vec::new()) {
            Ok(()) => {
                p.slot = Some(slot);
                p.no_slot = false;
            }
            Err(ManagerError::Disconnected { .. }) => p.ch = None,
            Err(_) => {}
        }
    }

    /// Sends a request whose success needs no answer (`dict.set`, `list.push`, dropping
    /// a reference) without waiting: it is applied before every later call of this
    /// process. The server reports a failure only (on the next read, to stderr). As for
    /// [`call`](Self::call), `write` runs with no connection held.
    pub(crate) fn post(
        &self,
        op: u8,
        write: impl FnOnce(&mut Writer<'_>) -> Result<(), CodecError>,
    ) -> Result<(), ManagerError> {
        with_buffers(|req, _| {
            let fds = encode(req, write)?;
            self.post_encoded(op, req, &fds)
        })
    }

    fn post_encoded(&self, op: u8, req: &[u8], fds: &[OwnedFd]) -> Result<(), ManagerError> {
        let mut p = self.primary()?;
        let ch = p.ch.as_mut().expect("opened by primary()");
        self.send(ch, op, req, fds)?;
        if let Err(e) = ch.writer.flush(None) {
            p.ch = None;
            return Err(self.lost(e));
        }
        p.posted = true;
        p.unchecked += 1;
        if p.unchecked < POST_CHECK_EVERY {
            return Ok(());
        }
        p.unchecked = 0;
        self.read_posted_reports(&mut p)
    }

    /// Reads the failure reports of posted requests that have arrived, without waiting:
    /// done now and then, so they never fill the socket, and one non-blocking read every
    /// few posts keeps a post at one syscall.
    fn read_posted_reports(&self, p: &mut Primary) -> Result<(), ManagerError> {
        let ch = p.ch.as_mut().expect("opened by primary()");
        while ch.reader.try_fill() {
            match ch.recv(None) {
                Ok(f) if f.kind == KIND_POSTED_ERR => report_posted(f.payload),
                Ok(_) | Err(_) => {
                    p.ch = None;
                    return Err(self.lost(FrameError::Malformed("unexpected reply to a posted request".into())));
                }
            }
        }
        Ok(())
    }

    /// Waits until every posted request of this process has been applied.
    pub(crate) fn sync(&self) -> Result<(), ManagerError> {
        let mut p = self.primary()?;
        if !p.posted {
            return Ok(());
        }
        let ch = p.ch.as_mut().expect("opened by primary()");
        self.send(ch, op::PING, &[], &[])?;
        let mut reply = Vec::new();
        let result = self.round_trip(ch, &mut reply).and_then(|()| unit(&reply).map_err(ManagerError::Codec));
        match result {
            Err(ManagerError::Disconnected { .. }) => p.ch = None,
            _ => p.posted = false,
        }
        result
    }
}

/// Builds a request payload in `req`, collecting the descriptors its values attach.
fn encode(
    req: &mut Vec<u8>,
    write: impl FnOnce(&mut Writer<'_>) -> Result<(), CodecError>,
) -> Result<Vec<OwnedFd>, ManagerError> {
    req.clear();
    let (r, fds) = crate::wire::fds::collect_outgoing(|| write(&mut Writer(req)));
    r.map_err(ManagerError::Codec)?;
    Ok(fds)
}

/// Buffers kept for reuse this large at most, so one huge value does not pin its memory.
const KEEP_BUFFER: usize = 1 << 20;

thread_local! {
    /// This thread's request and reply buffers, between calls.
    static BUFFERS: Cell<(Vec<u8>, Vec<u8>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's request and reply buffers. A call made inside `f` (while
/// a proxy encodes or decodes) finds none kept and uses new ones, as does one made while
/// the thread's locals are destroyed (a proxy kept in a thread local, dropped last).
fn with_buffers<R>(f: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>) -> R) -> R {
    let (mut req, mut reply) = BUFFERS.try_with(Cell::take).unwrap_or_default();
    let r = f(&mut req, &mut reply);
    if req.capacity() <= KEEP_BUFFER && reply.capacity() <= KEEP_BUFFER {
        let _ = BUFFERS.try_with(|b| b.set((req, reply)));
    }
    r
}

impl Drop for Client {
    fn drop(&mut self) {
        // A process that ends right after posting must not race the server: whoever
        // waits for this process (a parent's `join`) then sees every write applied.
        let _ = self.sync();
    }
}

/// Operations that may wait in the server.
fn may_block(code: u8) -> bool {
    travel(code) == Travel::Blocking
}

/// A posted request failed: nobody waits for its answer, so say it where it is seen.
fn report_posted(payload: &[u8]) {
    let e = codec::decode::<RemoteError>(payload)
        .map(|e| ManagerError::from_remote(e).to_string())
        .unwrap_or_else(|e| e.to_string());
    eprintln!("multiproc manager: a request sent without waiting (set, push) failed: {e}");
}

/// Reads over the socket before a slot is opened: a process that makes only a few
/// calls costs the server no extra thread.
const SLOT_AFTER: u32 = 16;

/// How many posts may go by without reading the failure reports of earlier ones: few
/// enough that their reports fit in the socket's buffer.
const POST_CHECK_EVERY: u32 = 32;

/// Decodes a reply that carries nothing.
pub(crate) fn unit(p: &[u8]) -> Result<(), CodecError> {
    if p.is_empty() {
        Ok(())
    } else {
        Err(CodecError { op: "decode", type_name: "()", message: format!("{} unexpected bytes", p.len()) })
    }
}

/// Decodes a whole reply as a `T`.
pub(crate) fn value<T: serde::de::DeserializeOwned>(p: &[u8]) -> Result<T, CodecError> {
    codec::decode(p)
}
