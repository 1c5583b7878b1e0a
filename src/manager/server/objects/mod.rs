//! The objects a server holds, and what each operation does to them: one file per kind,
//! each with its state and a handler for its kind's operations (`protocol::<kind>`).
//!
//! Every object has its own lock; an operation holds it only while it runs (blocking
//! operations wait on a condition variable, which releases it), never during socket I/O.
//! Containers store the encoded bytes their clients sent and reply with them unchanged.

mod barrier;
mod condition;
mod custom;
mod dict;
mod event;
pub(crate) mod held;
mod lock;
mod namespace;
mod ordered_map;
mod queue;
mod semaphore;
mod seq;
mod value;

use std::os::fd::BorrowedFd;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::manager::protocol::{Init, Kind, ObjectOp, RemoteError, Wait};
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
    fn gone(&self) -> bool {
        self.fd
            .is_some_and(|fd| sys::fd::wait_ready(fd, sys::fd::Readiness::Read, Some(Duration::ZERO)).unwrap_or(true))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv` while `blocked` holds, for at most `wait`. Returns the guard and whether
/// the condition cleared; `PeerGone` if the client hung up meanwhile.
fn wait_while<'g, T>(
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
struct Guarded<T> {
    state: Mutex<T>,
    changed: Condvar,
}

impl<T> Guarded<T> {
    fn new(t: T) -> Guarded<T> {
        Guarded { state: Mutex::new(t), changed: Condvar::new() }
    }
}

enum State {
    Dict(Mutex<ordered_map::OrderedMap>),
    Seq(Mutex<Vec<Vec<u8>>>),
    Queue(queue::Queue),
    Value(Mutex<Vec<u8>>),
    Namespace(Mutex<namespace::Names>),
    Lock(Guarded<lock::LockState>),
    Semaphore(Guarded<semaphore::SemState>),
    Event(Guarded<bool>),
    Condition(Guarded<condition::CondState>),
    Barrier(Guarded<barrier::BarrierState>),
    Custom(Mutex<Option<custom::Custom>>),
}

/// One shared object.
pub(crate) struct Object {
    pub(crate) kind: Kind,
    /// The element types it was created with, e.g. `dict<alloc::string::String, u64>`.
    pub(crate) types: Box<str>,
    state: State,
}

impl Drop for Object {
    fn drop(&mut self) {
        if let State::Custom(m) = &mut self.state {
            custom::drop_object(m);
        }
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
struct Ctx<'c, 'p> {
    id: u64,
    kind: Kind,
    peer: &'c Peer<'p>,
    /// Where a container reports the values it stores and lets go of.
    held: &'c dyn held::Held,
    /// The reply payload.
    out: &'c mut Vec<u8>,
}

impl Ctx<'_, '_> {
    /// The operation is not one this object's kind has.
    fn wrong(&self, target: &str) -> RemoteError {
        RemoteError::WrongType { id: self.id, expected: target.into(), found: self.kind.name().into() }
    }
}

fn put_varint(out: &mut Vec<u8>, n: u64) {
    crate::wire::codec::encode_into(&n, out).expect("a u64 always encodes");
}

fn put_option(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            out.extend_from_slice(b);
        }
    }
}

fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.push(b as u8);
}

fn put_seq<'a>(out: &mut Vec<u8>, n: usize, items: impl Iterator<Item = &'a [u8]>) {
    put_varint(out, n as u64);
    for b in items {
        out.extend_from_slice(b);
    }
}

fn misuse(m: impl Into<String>) -> RemoteError {
    RemoteError::Misuse(m.into())
}

impl Object {
    /// Builds an object; `Err` for parameters that make no sense (a barrier of 0 parties).
    pub(crate) fn new(kind: Kind, types: &str, init: Init<'_>, peer: &Peer<'_>) -> Result<Object, RemoteError> {
        // A table: each kind with the initial value it is created from.
        let state = match (kind, init) {
            (Kind::Dict, Init::Empty) => State::Dict(Mutex::default()),
            (Kind::List | Kind::Array, Init::Items(items)) => State::Seq(Mutex::new(seq::new(items))),
            (Kind::Queue | Kind::JoinableQueue, Init::Queue { maxsize }) => State::Queue(queue::Queue::new(maxsize)),
            (Kind::Value, Init::Value(v)) => State::Value(Mutex::new(v.to_vec())),
            (Kind::Namespace, Init::Empty) => State::Namespace(Mutex::default()),
            (Kind::Lock | Kind::RLock, Init::Empty) => State::Lock(Guarded::default()),
            (Kind::Semaphore, Init::Semaphore { value, bounded }) => {
                State::Semaphore(Guarded::new(semaphore::new(value, bounded)))
            }
            (Kind::Event, Init::Empty) => State::Event(Guarded::default()),
            (Kind::Condition, Init::Empty) => State::Condition(Guarded::default()),
            (Kind::Barrier, Init::Barrier { parties }) => State::Barrier(Guarded::new(barrier::new(parties)?)),
            (Kind::Custom, Init::Custom { ctor, init }) => {
                State::Custom(Mutex::new(Some(custom::new(peer, ctor, init)?)))
            }
            (kind, _) => return Err(RemoteError::BadRequest(format!("wrong initial value for a {}", kind.name()))),
        };
        Ok(Object { kind, types: types.into(), state })
    }

    /// Runs one operation on this object (its id is `id`), writing the reply payload to
    /// `out`.
    pub(crate) fn handle(
        &self,
        id: u64,
        op: &ObjectOp<'_>,
        peer: &Peer<'_>,
        held: &dyn held::Held,
        out: &mut Vec<u8>,
    ) -> Result<Done, RemoteError> {
        let cx = &mut Ctx { id, kind: self.kind, peer, held, out };
        // A table: each state with the handler of its kind's operations.
        match (&self.state, op) {
            (State::Dict(m), ObjectOp::Dict(op)) => dict::handle(m, op, cx),
            (State::Seq(v), ObjectOp::Seq(op)) => seq::handle(v, op, cx),
            (State::Value(v), ObjectOp::Value(op)) => value::handle(v, op, cx),
            (State::Namespace(ns), ObjectOp::Namespace(op)) => namespace::handle(ns, op, cx),
            (State::Queue(q), ObjectOp::Queue(op)) => q.handle(op, cx),
            (State::Lock(g), ObjectOp::Sync(op)) => lock::handle(g, op, cx),
            (State::Semaphore(g), ObjectOp::Sync(op)) => semaphore::handle(g, op, cx),
            (State::Event(g), ObjectOp::Sync(op)) => event::handle(g, op, cx),
            (State::Condition(g), ObjectOp::Sync(op)) => condition::handle(g, op, cx),
            (State::Barrier(g), ObjectOp::Sync(op)) => barrier::handle(g, op, cx),
            (State::Custom(m), ObjectOp::Custom(op)) => custom::handle(m, op, cx),
            _ => Err(cx.wrong(op.target())),
        }
    }

    /// Puts back an item whose reply could not be delivered; it holds its proxies again.
    pub(crate) fn requeue(&self, item: Vec<u8>, held: &dyn held::Held) {
        if let State::Queue(q) = &self.state {
            held.stored(&item);
            q.requeue(item);
        }
    }

    /// Releases whatever lock `session` holds on this object (its process is gone).
    pub(crate) fn release_session(&self, session: [u8; 16]) {
        match &self.state {
            State::Lock(g) => lock::release_session(g, session),
            State::Condition(g) => condition::release_session(g, session),
            _ => {}
        }
    }
}
