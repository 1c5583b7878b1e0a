//! The manager's server: a listener, one thread per client connection, and the objects.
//!
//! Objects live in a registry with a reference count; each client process is a
//! *session* (all its connections share one) whose references are counted apart, so
//! when the process ends — cleanly or killed — its connections close and everything it
//! held is released, including locks it had acquired. Operations on an object take only
//! that object's lock: each connection keeps its own cache of the objects it uses, so
//! the registry's lock is taken for reference changes, not for operations.

mod objects;
mod ordered_map;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub(crate) use objects::Peer;
use objects::{Done, Object};

use super::address::{Address, Listener};
use super::auth;
use super::protocol::{
    KIND_ERR, KIND_OK, KIND_POSTED_ERR, KIND_SERVER_FAILED, KIND_SERVER_SHUTDOWN, KIND_SERVER_STARTED,
    KIND_SESSION_HELLO, KIND_SESSION_READY, KIND_SLOT_OPEN, Kind, MANAGER_PROTOCOL, RemoteError, Request, SessionHello,
    SessionReady, Wait, decode_request,
};
use super::slot::{self, ServerSlot};
use crate::spawn::ChildContext;
use crate::spawn::identity::SameBuild;
use crate::wire::FrameError;
use crate::wire::frame::Channel;

/// How long a new connection has to authenticate and say hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a server is told when it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServerConfig {
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
    pub(crate) max_request: u32,
}

/// What a started server reports to the process that started it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Started {
    pub(crate) address: Address,
}

struct Entry {
    obj: Arc<Object>,
    refs: u64,
}

#[derive(Default)]
struct Session {
    connections: u64,
    refs: HashMap<u64, u64>,
    /// References held for proxies on their way to another process, by token.
    transit: HashMap<u64, u64>,
}

#[derive(Default)]
struct Registry {
    objects: HashMap<u64, Entry>,
    sessions: HashMap<[u8; 16], Session>,
    /// token -> (session, object) for every reference in transit.
    transit: HashMap<u64, ([u8; 16], u64)>,
    names: HashMap<String, u64>,
    next_id: u64,
    next_token: u64,
}

impl Registry {
    fn check(&self, id: u64, kind: Kind, types: &str) -> Result<(), RemoteError> {
        let e = self.objects.get(&id).ok_or(RemoteError::UnknownObject(id))?;
        if e.obj.kind != kind || &*e.obj.types != types {
            return Err(RemoteError::WrongType { id, expected: types.into(), found: e.obj.types.to_string() });
        }
        Ok(())
    }

    fn incref(&mut self, session: [u8; 16], id: u64) {
        if let Some(e) = self.objects.get_mut(&id) {
            e.refs += 1;
            *self.sessions.entry(session).or_default().refs.entry(id).or_default() += 1;
        }
    }

    /// Drops one reference; returns the object if that was its last.
    fn decref(&mut self, id: u64) -> Option<Arc<Object>> {
        let e = self.objects.get_mut(&id)?;
        e.refs -= 1;
        if e.refs == 0 { self.objects.remove(&id).map(|e| e.obj) } else { None }
    }
}

/// A running server's shared state.
pub(crate) struct Server {
    authkey: Vec<u8>,
    max_request: u32,
    registry: Mutex<Registry>,
    /// Signalled whenever objects are freed (for `wait_object_count`).
    freed: Condvar,
    connections: AtomicU64,
}

/// One connection's own state.
pub(crate) struct Connection {
    session: [u8; 16],
    same_build: Option<SameBuild>,
    cache: HashMap<u64, Weak<Object>>,
    cache_limit: usize,
}

impl Server {
    pub(crate) fn new(authkey: Vec<u8>, max_request: u32) -> Arc<Server> {
        Arc::new(Server {
            authkey,
            max_request,
            registry: Mutex::new(Registry { next_id: 1, next_token: 1, ..Registry::default() }),
            freed: Condvar::new(),
            connections: AtomicU64::new(0),
        })
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a connection's place in a session (a new one, or its process's).
    pub(crate) fn join(&self, session: Option<[u8; 16]>, same_build: Option<SameBuild>) -> Result<Connection, String> {
        let mut reg = self.registry();
        let id = match session {
            Some(id) => {
                let s = reg.sessions.get_mut(&id).ok_or("unknown session: its process's connections all closed")?;
                s.connections += 1;
                id
            }
            None => {
                let mut id = [0u8; 16];
                auth::random_bytes(&mut id).map_err(|e| e.to_string())?;
                reg.sessions.insert(id, Session { connections: 1, ..Session::default() });
                id
            }
        };
        self.connections.fetch_add(1, Ordering::Relaxed);
        Ok(Connection { session: id, same_build, cache: HashMap::new(), cache_limit: 64 })
    }

    /// Closes a connection; the last one of a session releases all it held.
    pub(crate) fn leave(&self, conn: Connection) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
        let mut freed = Vec::new();
        let mut held = Vec::new();
        {
            let mut reg = self.registry();
            let Some(s) = reg.sessions.get_mut(&conn.session) else { return };
            s.connections -= 1;
            if s.connections > 0 {
                return;
            }
            let s = reg.sessions.remove(&conn.session).expect("present above");
            for token in s.transit.keys() {
                reg.transit.remove(token);
            }
            let ids = s.refs.iter().flat_map(|(&id, &n)| std::iter::repeat_n(id, n as usize));
            for id in ids.chain(s.transit.values().copied()) {
                if let Some(e) = reg.objects.get(&id) {
                    held.push(e.obj.clone());
                }
                freed.extend(reg.decref(id));
            }
        }
        for obj in &held {
            obj.release_session(conn.session);
        }
        drop(held);
        if !freed.is_empty() {
            drop(freed);
            self.freed.notify_all();
        }
    }

    fn object(&self, conn: &mut Connection, id: u64) -> Result<Arc<Object>, RemoteError> {
        if let Some(obj) = conn.cache.get(&id).and_then(Weak::upgrade) {
            return Ok(obj);
        }
        let obj = self.registry().objects.get(&id).map(|e| e.obj.clone()).ok_or(RemoteError::UnknownObject(id))?;
        if conn.cache.len() >= conn.cache_limit {
            conn.cache.retain(|_, w| w.strong_count() > 0);
            conn.cache_limit = (conn.cache.len() * 2).max(64);
        }
        conn.cache.insert(id, Arc::downgrade(&obj));
        Ok(obj)
    }

    /// Serves one decoded request.
    pub(crate) fn serve(
        &self,
        conn: &mut Connection,
        req: &Request<'_>,
        peer: &Peer<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Served, RemoteError> {
        let put_u64 = |out: &mut Vec<u8>, n: u64| crate::wire::codec::encode_into(&n, out).expect("u64 encodes");
        match *req {
            Request::Create { kind, types, ref init } => {
                let obj = Arc::new(Object::new(kind, types, init.clone(), peer)?);
                let mut reg = self.registry();
                let id = reg.next_id;
                reg.next_id += 1;
                reg.objects.insert(id, Entry { obj, refs: 0 });
                reg.incref(conn.session, id);
                put_u64(out, id);
            }
            Request::Incref { obj, kind, types } => {
                let mut reg = self.registry();
                reg.check(obj, kind, types)?;
                reg.incref(conn.session, obj);
            }
            Request::Decref { obj } => {
                let freed = {
                    let mut reg = self.registry();
                    let Some(s) = reg.sessions.get_mut(&conn.session) else { return Ok(Served::Silent) };
                    // Only a reference this session holds can be dropped by it.
                    match s.refs.get_mut(&obj) {
                        Some(n) if *n > 1 => *n -= 1,
                        Some(_) => {
                            s.refs.remove(&obj);
                        }
                        None => return Ok(Served::Silent),
                    }
                    reg.decref(obj)
                };
                if freed.is_some() {
                    drop(freed);
                    self.freed.notify_all();
                }
                return Ok(Served::Silent);
            }
            Request::Transit { obj } => {
                let mut reg = self.registry();
                let e = reg.objects.get_mut(&obj).ok_or(RemoteError::UnknownObject(obj))?;
                e.refs += 1;
                let token = reg.next_token;
                reg.next_token += 1;
                reg.transit.insert(token, (conn.session, obj));
                reg.sessions.entry(conn.session).or_default().transit.insert(token, obj);
                put_u64(out, token);
            }
            Request::Adopt { obj, token, kind, types } => {
                let mut reg = self.registry();
                reg.check(obj, kind, types)?;
                match reg.transit.get(&token) {
                    Some(&(from, o)) if o == obj => {
                        reg.transit.remove(&token);
                        if let Some(s) = reg.sessions.get_mut(&from) {
                            s.transit.remove(&token);
                        }
                        *reg.sessions.entry(conn.session).or_default().refs.entry(obj).or_default() += 1;
                    }
                    // Already adopted (the same bytes decoded twice): take a new reference.
                    _ => reg.incref(conn.session, obj),
                }
            }
            Request::Publish { name, obj } => {
                let freed = {
                    let mut reg = self.registry();
                    let e = reg.objects.get_mut(&obj).ok_or(RemoteError::UnknownObject(obj))?;
                    e.refs += 1;
                    let old = reg.names.insert(name.to_string(), obj);
                    old.and_then(|old| reg.decref(old))
                };
                drop(freed);
            }
            Request::Lookup { name, kind, types } => {
                let mut reg = self.registry();
                let &id = reg.names.get(name).ok_or_else(|| RemoteError::UnknownName(name.into()))?;
                reg.check(id, kind, types)?;
                reg.incref(conn.session, id);
                put_u64(out, id);
            }
            Request::Unpublish { name } => {
                let freed = {
                    let mut reg = self.registry();
                    let id = reg.names.remove(name).ok_or_else(|| RemoteError::UnknownName(name.into()))?;
                    reg.decref(id)
                };
                if freed.is_some() {
                    drop(freed);
                    self.freed.notify_all();
                }
            }
            Request::Count => put_u64(out, self.registry().objects.len() as u64),
            Request::Ping => {}
            Request::WaitCount { max, wait } => {
                let deadline = match wait {
                    Wait::No => Some(Instant::now()),
                    Wait::For(d) => Instant::now().checked_add(d),
                    Wait::Forever => None,
                };
                let mut reg = self.registry();
                let ok = loop {
                    if reg.objects.len() as u64 <= max {
                        break true;
                    }
                    let slice = match deadline {
                        Some(d) => match d.checked_duration_since(Instant::now()) {
                            Some(left) if !left.is_zero() => left.min(Duration::from_millis(100)),
                            _ => break false,
                        },
                        None => Duration::from_millis(100),
                    };
                    reg = self.freed.wait_timeout(reg, slice).unwrap_or_else(|e| e.into_inner()).0;
                };
                out.push(ok as u8);
            }
            ref other => {
                let id = object_of(other).expect("every other request names an object");
                let obj = self.object(conn, id)?;
                let peer = Peer { session: conn.session, same_build: conn.same_build, fd: peer.fd };
                return match obj.handle(id, other, &peer, out)? {
                    Done::Reply => Ok(Served::Reply),
                    Done::ReplyOrRequeue => Ok(Served::ReplyOrRequeue(obj)),
                };
            }
        }
        Ok(Served::Reply)
    }

    /// Handles one connection until it closes.
    pub(crate) fn serve_connection(self: Arc<Self>, sock: OwnedFd) {
        let Ok(poll_fd) = sock.try_clone() else { return };
        let mut ch = Channel::new(sock, auth::AUTH_MAX_FRAME);
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        if auth::serve(&mut ch, &self.authkey, deadline).is_err() {
            return;
        }
        let hello: SessionHello = match ch.recv(Some(deadline)) {
            Ok(f) if f.kind == KIND_SESSION_HELLO => match f.decode() {
                Ok(h) => h,
                Err(_) => return,
            },
            _ => return,
        };
        if hello.protocol != MANAGER_PROTOCOL {
            let why = format!("the manager speaks protocol {MANAGER_PROTOCOL}, the client {}", hello.protocol);
            let _ = ch.writer.queue(KIND_SESSION_READY, &SessionReady::Refused(why));
            let _ = ch.writer.flush(Some(deadline));
            return;
        }
        let same_build = SameBuild::check(hello.fingerprint);
        let mut conn = match self.join(hello.session, same_build) {
            Ok(c) => c,
            Err(why) => {
                let _ = ch.writer.queue(KIND_SESSION_READY, &SessionReady::Refused(why));
                let _ = ch.writer.flush(Some(deadline));
                return;
            }
        };
        let ready = SessionReady::Ready {
            session: conn.session,
            max_request: self.max_request,
            server_pid: std::process::id(),
        };
        if ch.writer.queue(KIND_SESSION_READY, &ready).is_ok() && ch.writer.flush(Some(deadline)).is_ok() {
            ch.set_max_frame(self.max_request);
            self.serve_requests(&mut conn, ch, &poll_fd);
        }
        self.leave(conn);
    }

    fn serve_requests(self: &Arc<Self>, conn: &mut Connection, ch: Channel, poll_fd: &OwnedFd) {
        let mut slots = Vec::new();
        self.serve_frames(conn, ch, poll_fd, &mut slots);
        for slot in slots {
            slot.close();
        }
    }

    /// Opens the shared-memory slot a client sent, with a thread of its own that serves
    /// it as another connection of the same session.
    fn open_slot(self: &Arc<Self>, conn: &Connection, fds: &[OwnedFd]) -> Result<Arc<ServerSlot>, RemoteError> {
        let [fd] = fds else {
            return Err(RemoteError::BadRequest(format!("a slot request carries one descriptor, not {}", fds.len())));
        };
        let slot = ServerSlot::open(fd).map_err(RemoteError::BadRequest)?;
        let mut slot_conn = self.join(Some(conn.session), conn.same_build).map_err(RemoteError::BadRequest)?;
        let (server, served) = (self.clone(), slot.clone());
        let spawned = std::thread::Builder::new().name("multiproc-manager-slot".into()).spawn(move || {
            server.serve_slot(&mut slot_conn, &served);
            server.leave(slot_conn);
        });
        match spawned {
            Ok(_) => Ok(slot),
            Err(e) => Err(RemoteError::BadRequest(format!("cannot start the slot's thread: {e}"))),
        }
    }

    /// Serves a slot's requests (read-only ones only) until its connection ends.
    fn serve_slot(&self, conn: &mut Connection, slot: &ServerSlot) {
        let peer = Peer { session: conn.session, same_build: conn.same_build, fd: None };
        let (mut req, mut out) = (Vec::new(), Vec::new());
        while let Some(code) = slot.next(&mut req) {
            out.clear();
            let result = if slot::eligible(code) {
                decode_request(code, &req).and_then(|r| self.serve(conn, &r, &peer, &mut out))
            } else {
                Err(RemoteError::BadRequest(format!("request {code:#04x} cannot go through a slot")))
            };
            match result {
                Ok(_) => slot.reply(KIND_OK, &out),
                Err(e) => {
                    out.clear();
                    match crate::wire::codec::encode_into(&e, &mut out) {
                        Ok(()) => slot.reply(KIND_ERR, &out),
                        Err(_) => slot.reply(KIND_ERR, &[]),
                    }
                }
            }
        }
    }

    fn serve_frames(
        self: &Arc<Self>,
        conn: &mut Connection,
        ch: Channel,
        poll_fd: &OwnedFd,
        slots: &mut Vec<Arc<ServerSlot>>,
    ) {
        let (mut reader, mut writer) = ch.split();
        let peer = Peer { session: conn.session, same_build: conn.same_build, fd: Some(poll_fd.as_fd()) };
        let mut out = Vec::new();
        loop {
            reader.spin_fill(REQUEST_SPIN, None);
            let frame = match reader.recv(None) {
                Ok(f) => f,
                Err(FrameError::Oversized { len, max }) => {
                    // The rest of that frame is still in the socket: answer, then hang up.
                    let e = RemoteError::BadRequest(format!("request of {len} bytes exceeds the limit of {max}"));
                    let _ = writer.queue(KIND_ERR, &e);
                    let _ = writer.flush(Some(Instant::now() + Duration::from_secs(1)));
                    return;
                }
                Err(_) => return,
            };
            out.clear();
            let mut posted = false;
            let result = if frame.kind == KIND_SLOT_OPEN && !slots.is_empty() {
                Err(RemoteError::BadRequest("this connection already has a slot".into()))
            } else if frame.kind == KIND_SLOT_OPEN {
                self.open_slot(conn, &frame.fds).map(|slot| {
                    slots.push(slot);
                    Served::Reply
                })
            } else if !frame.fds.is_empty() {
                Err(RemoteError::BadRequest("values holding file descriptors cannot be stored in a manager".into()))
            } else {
                decode_request(frame.kind, frame.payload).and_then(|req| {
                    posted = req.is_posted();
                    let r = self.serve(conn, &req, &peer, &mut out);
                    if posted { r.map(|_| Served::Silent) } else { r }
                })
            };
            drop(frame);
            let requeue = match result {
                Ok(Served::Silent) => None,
                Ok(Served::Reply) => {
                    queue_reply(&mut writer, &out);
                    None
                }
                Ok(Served::ReplyOrRequeue(obj)) => {
                    queue_reply(&mut writer, &out);
                    Some(obj)
                }
                Err(RemoteError::PeerGone) => return,
                Err(e) => {
                    let _ = writer.queue(if posted { KIND_POSTED_ERR } else { KIND_ERR }, &e);
                    None
                }
            };
            if (requeue.is_some() || !reader.has_frame()) && writer.flush(None).is_err() {
                if let Some(obj) = requeue {
                    obj.requeue(std::mem::take(&mut out));
                }
                return;
            }
        }
    }
}

/// How long a connection polls for the next request before sleeping in the kernel: a
/// client in a loop sends it within microseconds of its reply, and a sleeping thread
/// takes about as long again to wake.
const REQUEST_SPIN: Duration = Duration::from_micros(50);

fn queue_reply(writer: &mut crate::wire::frame::FrameWriter, out: &[u8]) {
    if let Err(e) = writer.queue_bytes(KIND_OK, out) {
        let _ = writer.queue(KIND_ERR, &RemoteError::BadRequest(format!("the reply cannot be sent: {e}")));
    }
}

/// What a served request leaves to the connection.
pub(crate) enum Served {
    Reply,
    ReplyOrRequeue(Arc<Object>),
    Silent,
}

/// The object a request operates on, for requests that operate on one.
fn object_of(req: &Request<'_>) -> Option<u64> {
    use Request as R;
    Some(match *req {
        R::Create { .. }
        | R::Incref { .. }
        | R::Decref { .. }
        | R::Transit { .. }
        | R::Adopt { .. }
        | R::Publish { .. }
        | R::Lookup { .. }
        | R::Unpublish { .. }
        | R::Count
        | R::Ping
        | R::WaitCount { .. } => return None,
        R::DictGet { obj, .. }
        | R::DictGetMany { obj, .. }
        | R::DictInsert { obj, .. }
        | R::DictSet { obj, .. }
        | R::DictRemove { obj, .. }
        | R::DictContains { obj, .. }
        | R::DictLen { obj }
        | R::DictKeys { obj }
        | R::DictValues { obj }
        | R::DictItems { obj }
        | R::DictUpdate { obj, .. }
        | R::DictClear { obj }
        | R::DictModify { obj, .. }
        | R::SeqPush { obj, .. }
        | R::SeqPop { obj }
        | R::SeqGet { obj, .. }
        | R::SeqSet { obj, .. }
        | R::SeqLen { obj }
        | R::SeqExtend { obj, .. }
        | R::SeqSnapshot { obj }
        | R::SeqClear { obj }
        | R::SeqInsert { obj, .. }
        | R::SeqRemove { obj, .. }
        | R::SeqModify { obj, .. }
        | R::ValueGet { obj }
        | R::ValueSet { obj, .. }
        | R::ValueModify { obj, .. }
        | R::NsGet { obj, .. }
        | R::NsSet { obj, .. }
        | R::NsRemove { obj, .. }
        | R::NsNames { obj }
        | R::QueuePut { obj, .. }
        | R::QueueGet { obj, .. }
        | R::QueueLen { obj }
        | R::QueueTaskDone { obj }
        | R::QueueJoin { obj, .. }
        | R::Acquire { obj, .. }
        | R::Release { obj, .. }
        | R::SemValue { obj }
        | R::EventSet { obj }
        | R::EventClear { obj }
        | R::EventIsSet { obj }
        | R::EventWait { obj, .. }
        | R::CondWait { obj, .. }
        | R::CondNotify { obj, .. }
        | R::BarrierWait { obj, .. }
        | R::BarrierAbort { obj }
        | R::BarrierReset { obj }
        | R::BarrierState { obj }
        | R::Call { obj, .. } => obj,
    })
}

/// Accepts connections forever, one thread each.
pub(crate) fn accept_loop(server: Arc<Server>, listener: Listener) -> std::io::Error {
    loop {
        match listener.accept() {
            Ok(sock) => {
                let s = server.clone();
                // A thread that cannot start drops its connection; the server goes on.
                let _ = std::thread::Builder::new().name("multiproc-manager-conn".into()).spawn(move || {
                    s.serve_connection(sock);
                });
            }
            Err(e) if is_transient(&e) => {
                // Out of descriptors or similar: back off a little rather than spin.
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return e,
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), Interrupted | ConnectionAborted | ConnectionReset | WouldBlock | OutOfMemory)
        || matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EPROTO))
}

/// The entry of a started server process.
pub(crate) fn server_entry(ctx: ChildContext) {
    let ChildContext { mut channel, payload, .. } = ctx;
    let config: ServerConfig = match crate::wire::codec::decode(&payload) {
        Ok(c) => c,
        Err(e) => {
            let _ = channel.send(KIND_SERVER_FAILED, &format!("unreadable configuration: {e}"));
            return;
        }
    };
    let (listener, address) = match Listener::bind(&config.address) {
        Ok(l) => l,
        Err(e) => {
            let _ = channel.send(KIND_SERVER_FAILED, &e.to_string());
            return;
        }
    };
    if channel.send(KIND_SERVER_STARTED, &Started { address }).is_err() {
        return;
    }
    // The channel to the parent is the server's lifeline: a shutdown request or its end
    // (the parent died, or dropped its `Manager`) stops the server.
    let _ = std::thread::Builder::new().name("multiproc-manager-lifeline".into()).spawn(move || {
        loop {
            match channel.recv(None) {
                Ok(f) if f.kind == KIND_SERVER_SHUTDOWN => break,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        crate::sys::proc::exit_now(0);
    });
    let server = Server::new(config.authkey, config.max_request);
    let e = accept_loop(server, listener);
    eprintln!("multiproc manager: cannot accept connections: {e}");
    crate::sys::proc::exit_now(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::protocol::{Writer, op};
    use proptest::prelude::*;

    fn server_and_conn() -> (Arc<Server>, Connection) {
        let s = Server::new(b"k".to_vec(), 1 << 20);
        let c = s.join(None, SameBuild::check(crate::spawn::identity::fingerprint())).unwrap();
        (s, c)
    }

    fn run(s: &Server, c: &mut Connection, kind: u8, payload: &[u8]) -> Result<Vec<u8>, RemoteError> {
        let req = decode_request(kind, payload)?;
        let peer = Peer { session: c.session, same_build: c.same_build, fd: None };
        let mut out = Vec::new();
        s.serve(c, &req, &peer, &mut out).map(|_| out)
    }

    fn create(s: &Server, c: &mut Connection, kind: Kind) -> u64 {
        let mut p = Vec::new();
        let w = &mut Writer(&mut p);
        w.u8(kind as u8).str("t");
        match kind {
            Kind::List | Kind::Array => drop(w.u32(1).bytes(&[5])),
            Kind::Queue | Kind::JoinableQueue => drop(w.u64(2)),
            Kind::Value => drop(w.bytes(&[5])),
            Kind::Semaphore => drop(w.u64(1).u8(1)),
            Kind::Barrier => drop(w.u64(1)),
            _ => {}
        }
        let out = run(s, c, op::CREATE, &p).unwrap();
        crate::wire::codec::decode::<u64>(&out).unwrap()
    }

    #[test]
    fn a_session_that_ends_releases_its_objects_and_locks() {
        let (s, mut c) = server_and_conn();
        let lock = create(&s, &mut c, Kind::Lock);
        let mut p = Vec::new();
        Writer(&mut p).u64(lock).u64(1).u64(0);
        assert_eq!(run(&s, &mut c, op::L_ACQUIRE, &p).unwrap(), [1]);
        let mut other = s.join(None, SameBuild::check(crate::spawn::identity::fingerprint())).unwrap();
        let mut inc = Vec::new();
        Writer(&mut inc).u64(lock).u8(Kind::Lock as u8).str("t");
        run(&s, &mut other, op::INCREF, &inc).unwrap();
        s.leave(c);
        assert_eq!(s.registry().objects.len(), 1);
        assert_eq!(run(&s, &mut other, op::L_ACQUIRE, &p).unwrap(), [1], "released with its session");
        s.leave(other);
        assert!(s.registry().objects.is_empty());
    }

    const KINDS: [Kind; 13] = [
        Kind::Dict,
        Kind::List,
        Kind::Array,
        Kind::Queue,
        Kind::JoinableQueue,
        Kind::Value,
        Kind::Namespace,
        Kind::Lock,
        Kind::RLock,
        Kind::Semaphore,
        Kind::Event,
        Kind::Condition,
        Kind::Barrier,
    ];

    /// Every operation code, to aim random payloads at real parsers.
    const OPS: [u8; 62] = [
        op::CREATE,
        op::INCREF,
        op::DECREF,
        op::TRANSIT,
        op::ADOPT,
        op::PUBLISH,
        op::LOOKUP,
        op::UNPUBLISH,
        op::COUNT,
        op::WAIT_COUNT,
        op::PING,
        op::D_GET,
        op::D_INSERT,
        op::D_SET,
        op::D_REMOVE,
        op::D_CONTAINS,
        op::D_LEN,
        op::D_KEYS,
        op::D_VALUES,
        op::D_ITEMS,
        op::D_UPDATE,
        op::D_CLEAR,
        op::D_MODIFY,
        op::D_GET_MANY,
        op::S_PUSH,
        op::S_POP,
        op::S_GET,
        op::S_SET,
        op::S_LEN,
        op::S_EXTEND,
        op::S_SNAPSHOT,
        op::S_CLEAR,
        op::S_INSERT,
        op::S_REMOVE,
        op::S_MODIFY,
        op::V_GET,
        op::V_SET,
        op::V_MODIFY,
        op::N_GET,
        op::N_SET,
        op::N_REMOVE,
        op::N_NAMES,
        op::Q_PUT,
        op::Q_GET,
        op::Q_LEN,
        op::Q_TASK_DONE,
        op::Q_JOIN,
        op::L_ACQUIRE,
        op::L_RELEASE,
        op::SEM_VALUE,
        op::E_SET,
        op::E_CLEAR,
        op::E_IS_SET,
        op::E_WAIT,
        op::C_WAIT,
        op::C_NOTIFY,
        op::B_WAIT,
        op::B_ABORT,
        op::B_RESET,
        op::B_STATE,
        op::CALL,
        0xEE,
    ];

    /// A random but well-formed request on one of `ids`; waits are zero, function
    /// offsets are refused (the connection is marked as another build).
    fn request() -> impl Strategy<Value = (u8, Vec<u8>)> {
        (0usize..OPS.len(), 0u64..6, any::<u64>(), prop::collection::vec(any::<u8>(), 0..6), any::<u8>()).prop_map(
            |(o, id, n, bytes, b)| {
                let op = OPS[o];
                let mut p = Vec::new();
                let w = &mut Writer(&mut p);
                match op {
                    op::CREATE => {
                        let kind = KINDS[b as usize % KINDS.len()];
                        w.u8(kind as u8).str("t");
                        match kind {
                            Kind::List | Kind::Array => drop(w.u32(1).bytes(&bytes)),
                            Kind::Queue | Kind::JoinableQueue => drop(w.u64(n % 3)),
                            Kind::Value => drop(w.bytes(&bytes)),
                            Kind::Semaphore => drop(w.u64(n % 3).u8(b % 2)),
                            Kind::Barrier => drop(w.u64(n % 3)),
                            _ => {}
                        }
                    }
                    op::COUNT | op::PING => {}
                    op::WAIT_COUNT => drop(w.u64(n).u64(0)),
                    op::INCREF | op::LOOKUP => drop(w.u64(id).u8(b % 15).str("t")),
                    op::ADOPT => drop(w.u64(id).u64(n % 4).u8(b % 15).str("t")),
                    op::PUBLISH => drop(w.str("name").u64(id)),
                    op::UNPUBLISH => drop(w.str("name")),
                    op::D_GET | op::D_REMOVE | op::D_CONTAINS => drop(w.u64(id).bytes(&bytes)),
                    op::D_INSERT | op::D_SET => drop(w.u64(id).bytes(&bytes).bytes(&[b])),
                    op::D_UPDATE => drop(w.u64(id).u32(1).bytes(&bytes).bytes(&[b])),
                    op::D_GET_MANY | op::S_EXTEND => drop(w.u64(id).u32(1).bytes(&bytes)),
                    op::D_MODIFY => drop(w.u64(id).bytes(&bytes).i64(1).i64(2)),
                    op::S_PUSH | op::V_SET => drop(w.u64(id).bytes(&bytes)),
                    op::S_GET | op::S_REMOVE => drop(w.u64(id).u64(n % 4)),
                    op::S_SET | op::S_INSERT => drop(w.u64(id).u64(n % 4).bytes(&bytes)),
                    op::S_MODIFY => drop(w.u64(id).u64(n % 4).i64(1).i64(2)),
                    op::V_MODIFY => drop(w.u64(id).i64(1).i64(2)),
                    op::N_GET | op::N_REMOVE => drop(w.u64(id).str("a")),
                    op::N_SET => drop(w.u64(id).str("a").str("t").bytes(&bytes)),
                    op::Q_PUT => drop(w.u64(id).u64(0).bytes(&bytes)),
                    op::Q_GET | op::Q_JOIN | op::E_WAIT | op::B_WAIT => drop(w.u64(id).u64(0)),
                    op::L_ACQUIRE | op::C_WAIT => drop(w.u64(id).u64(n % 2).u64(0)),
                    op::L_RELEASE => drop(w.u64(id).u64(n % 2)),
                    op::C_NOTIFY => drop(w.u64(id).u64(n % 2).u64(n)),
                    op::CALL => drop(w.u64(id).i64(1).i64(2).bytes(&bytes)),
                    _ => drop(w.u64(id)),
                }
                (op, p)
            },
        )
    }

    proptest! {
        #[test]
        fn the_decoder_survives_any_bytes(kind in any::<u8>(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_request(kind, &payload);
        }

        #[test]
        fn the_decoder_survives_real_operations_with_random_payloads(
            o in 0usize..OPS.len(),
            payload in prop::collection::vec(any::<u8>(), 0..48),
        ) {
            if let Ok(req) = decode_request(OPS[o], &payload) {
                // Whatever parsed must have consumed the payload exactly.
                prop_assert!(!matches!(req, Request::Ping) || payload.is_empty());
            }
        }

        #[test]
        fn random_request_sequences_never_break_the_server(reqs in prop::collection::vec(request(), 1..40)) {
            let s = Server::new(b"k".to_vec(), 1 << 20);
            let mut a = s.join(None, None).unwrap();
            let mut b = s.join(None, None).unwrap();
            for (i, (kind, payload)) in reqs.iter().enumerate() {
                let c = if i % 3 == 0 { &mut b } else { &mut a };
                let r = run(&s, c, *kind, payload);
                prop_assert!(!matches!(r, Err(RemoteError::PeerGone)));
                if matches!(kind, &op::D_MODIFY | &op::S_MODIFY | &op::V_MODIFY | &op::CALL) {
                    prop_assert!(r.is_err(), "a function from another build ran");
                }
            }
            // Everything is released when the sessions end.
            s.leave(a);
            s.leave(b);
            let reg = s.registry();
            let published = reg.names.len();
            prop_assert!(reg.objects.len() <= published);
            prop_assert!(reg.sessions.is_empty() && reg.transit.is_empty());
        }
    }

    #[test]
    fn a_slot_serves_reads_refuses_the_rest_and_ends_with_its_connection() {
        use crate::manager::slot::{ClientSlot, SlotReply};
        let (s, mut c) = server_and_conn();
        let dict = create(&s, &mut c, Kind::Dict);
        let slot = ClientSlot::create().unwrap();
        let served = s.open_slot(&c, &[slot.fd().try_clone().unwrap()]).unwrap();
        let (mut out, mut alive) = (Vec::new(), || false);
        let mut len = Vec::new();
        Writer(&mut len).u64(dict);
        assert!(matches!(slot.call(op::D_LEN, &len, &mut out, &mut alive), SlotReply::Done(KIND_OK)));
        assert_eq!(crate::wire::codec::decode::<u64>(&out).unwrap(), 0);
        let mut set = Vec::new();
        Writer(&mut set).u64(dict).bytes(&[1]).bytes(&[2]);
        assert!(matches!(slot.call(op::D_SET, &set, &mut out, &mut alive), SlotReply::Done(KIND_ERR)));
        assert!(matches!(slot.call(op::D_GET, &[0xff; 3], &mut out, &mut alive), SlotReply::Done(KIND_ERR)));
        assert!(matches!(slot.call(0xEE, &[], &mut out, &mut alive), SlotReply::Done(KIND_ERR)));
        assert!(matches!(slot.call(op::D_LEN, &len, &mut out, &mut alive), SlotReply::Done(KIND_OK)));
        // The connection ends: the slot's thread leaves the session, which frees the dict.
        served.close();
        s.leave(c);
        let mut reg = s.registry();
        while !reg.objects.is_empty() {
            reg = s.freed.wait(reg).unwrap();
        }
        assert!(reg.sessions.is_empty());
    }

    #[test]
    fn known_kinds_create() {
        let (s, mut c) = server_and_conn();
        for k in KINDS {
            create(&s, &mut c, k);
        }
        assert_eq!(s.registry().objects.len(), KINDS.len());
    }
}
