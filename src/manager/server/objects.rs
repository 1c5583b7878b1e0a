//! The objects a server holds, and what each operation does to them.
//!
//! Every object has its own lock; an operation holds it only while it runs (blocking
//! operations wait on a condition variable, which releases it), never during socket I/O.
//! Containers store the encoded bytes their clients sent and reply with them unchanged.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::fd::BorrowedFd;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::ordered_map::OrderedMap;
use crate::manager::functions;
use crate::manager::protocol::{Init, Kind, RemoteError, Request, Wait};
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

#[derive(Debug, Default)]
struct LockState {
    owner: Option<Owner>,
    depth: u32,
}

#[derive(Debug)]
struct QueueState {
    items: VecDeque<Vec<u8>>,
    maxsize: u64,
    unfinished: u64,
}

#[derive(Debug)]
struct SemState {
    value: u64,
    ceiling: Option<u64>,
}

#[derive(Debug, Default)]
struct CondState {
    lock: LockState,
    waiting: VecDeque<u64>,
    notified: HashSet<u64>,
    next_ticket: u64,
}

#[derive(Debug, Default)]
struct BarrierState {
    parties: u64,
    count: u64,
    generation: u64,
    broken: bool,
    /// Generations ended by a reset, with how many waiters still have to learn it.
    reset: HashMap<u64, u64>,
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
    Dict(Mutex<OrderedMap>),
    Seq(Mutex<Vec<Vec<u8>>>),
    Queue { q: Mutex<QueueState>, not_empty: Condvar, not_full: Condvar, all_done: Condvar },
    Value(Mutex<Vec<u8>>),
    Namespace(Mutex<BTreeMap<String, (String, Vec<u8>)>>),
    Lock(Guarded<LockState>),
    Semaphore(Guarded<SemState>),
    Event(Guarded<bool>),
    Condition(Guarded<CondState>),
    Barrier(Guarded<BarrierState>),
    Custom(Mutex<Option<Box<dyn Any + Send>>>),
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
        if let State::Custom(m) = &mut self.state
            && let Some(obj) = m.get_mut().unwrap_or_else(|e| e.into_inner()).take()
        {
            functions::drop_quietly(obj);
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

fn index(i: u64, len: usize) -> Result<usize, RemoteError> {
    if i < len as u64 { Ok(i as usize) } else { Err(RemoteError::IndexOutOfRange { index: i, len: len as u64 }) }
}

impl Object {
    /// Builds an object; `Err` for parameters that make no sense (a barrier of 0 parties).
    pub(crate) fn new(kind: Kind, types: &str, init: Init<'_>, peer: &Peer<'_>) -> Result<Object, RemoteError> {
        let state = match (kind, init) {
            (Kind::Dict, Init::Empty) => State::Dict(Mutex::default()),
            (Kind::List | Kind::Array, Init::Items(items)) => {
                State::Seq(Mutex::new(items.into_iter().map(<[u8]>::to_vec).collect()))
            }
            (Kind::Queue | Kind::JoinableQueue, Init::Queue { maxsize }) => State::Queue {
                q: Mutex::new(QueueState { items: VecDeque::new(), maxsize, unfinished: 0 }),
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
                all_done: Condvar::new(),
            },
            (Kind::Value, Init::Value(v)) => State::Value(Mutex::new(v.to_vec())),
            (Kind::Namespace, Init::Empty) => State::Namespace(Mutex::default()),
            (Kind::Lock | Kind::RLock, Init::Empty) => State::Lock(Guarded::default()),
            (Kind::Semaphore, Init::Semaphore { value, bounded }) => {
                State::Semaphore(Guarded::new(SemState { value, ceiling: bounded.then_some(value) }))
            }
            (Kind::Event, Init::Empty) => State::Event(Guarded::default()),
            (Kind::Condition, Init::Empty) => State::Condition(Guarded::default()),
            (Kind::Barrier, Init::Barrier { parties }) => {
                if parties == 0 {
                    return Err(misuse("a barrier needs at least one party"));
                }
                State::Barrier(Guarded::new(BarrierState { parties, ..BarrierState::default() }))
            }
            (Kind::Custom, Init::Custom { ctor, init }) => {
                State::Custom(Mutex::new(Some(functions::run_create(peer.same_build, ctor, init)?)))
            }
            (kind, _) => return Err(RemoteError::BadRequest(format!("wrong initial value for a {}", kind.name()))),
        };
        Ok(Object { kind, types: types.into(), state })
    }

    fn wrong(&self, id: u64, expected: &str) -> RemoteError {
        RemoteError::WrongType { id, expected: expected.into(), found: self.kind.name().into() }
    }

    /// Runs one object operation, writing the reply payload to `out`.
    pub(crate) fn handle(
        &self,
        id: u64,
        req: &Request<'_>,
        peer: &Peer<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Done, RemoteError> {
        use Request as R;
        match (&self.state, req) {
            (State::Dict(m), _) => {
                let mut m = lock(m);
                match *req {
                    R::DictGet { key, .. } => put_option(out, m.get(key)),
                    R::DictGetMany { ref keys, .. } => {
                        put_varint(out, keys.len() as u64);
                        for k in keys {
                            put_option(out, m.get(k));
                        }
                    }
                    R::DictInsert { key, value, .. } => put_option(out, m.insert(key, value.to_vec()).as_deref()),
                    R::DictSet { key, value, .. } => {
                        m.insert(key, value.to_vec());
                    }
                    R::DictRemove { key, .. } => put_option(out, m.remove(key).as_deref()),
                    R::DictContains { key, .. } => put_bool(out, m.contains(key)),
                    R::DictLen { .. } => put_varint(out, m.len() as u64),
                    R::DictKeys { .. } => put_seq(out, m.len(), m.iter().map(|(k, _)| k)),
                    R::DictValues { .. } => put_seq(out, m.len(), m.iter().map(|(_, v)| v)),
                    R::DictItems { .. } => {
                        put_varint(out, m.len() as u64);
                        for (k, v) in m.iter() {
                            out.extend_from_slice(k);
                            out.extend_from_slice(v);
                        }
                    }
                    R::DictUpdate { ref pairs, .. } => {
                        for (k, v) in pairs {
                            m.insert(k, v.to_vec());
                        }
                    }
                    R::DictClear { .. } => m.clear(),
                    R::DictModify { key, tramp, f, .. } => {
                        functions::run_modify(peer.same_build, tramp, f, m.get(key), out)?;
                        m.insert(key, out.clone());
                    }
                    _ => return Err(self.wrong(id, "dict")),
                }
            }
            (State::Seq(v), _) => {
                let fixed = self.kind == Kind::Array;
                let mut v = lock(v);
                match *req {
                    R::SeqGet { index: i, .. } => put_option(out, v.get(i as usize).map(Vec::as_slice)),
                    R::SeqSet { index: i, value, .. } => {
                        let i = index(i, v.len())?;
                        v[i] = value.to_vec();
                    }
                    R::SeqLen { .. } => put_varint(out, v.len() as u64),
                    R::SeqSnapshot { .. } => put_seq(out, v.len(), v.iter().map(Vec::as_slice)),
                    R::SeqModify { index: i, tramp, f, .. } => {
                        let i = index(i, v.len())?;
                        functions::run_modify(peer.same_build, tramp, f, Some(&v[i]), out)?;
                        v[i] = out.clone();
                    }
                    _ if fixed => return Err(misuse("an array has a fixed length: it cannot grow or shrink")),
                    R::SeqPush { value, .. } => v.push(value.to_vec()),
                    R::SeqPop { .. } => put_option(out, v.pop().as_deref()),
                    R::SeqExtend { ref values, .. } => v.extend(values.iter().map(|b| b.to_vec())),
                    R::SeqClear { .. } => v.clear(),
                    R::SeqInsert { index: i, value, .. } => {
                        if i > v.len() as u64 {
                            return Err(RemoteError::IndexOutOfRange { index: i, len: v.len() as u64 });
                        }
                        v.insert(i as usize, value.to_vec());
                    }
                    R::SeqRemove { index: i, .. } => {
                        let i = index(i, v.len())?;
                        out.extend_from_slice(&v.remove(i));
                    }
                    _ => return Err(self.wrong(id, "list")),
                }
            }
            (State::Value(v), R::ValueGet { .. }) => out.extend_from_slice(&lock(v)),
            (State::Value(v), R::ValueSet { value, .. }) => *lock(v) = value.to_vec(),
            (State::Value(v), R::ValueModify { tramp, f, .. }) => {
                let mut v = lock(v);
                functions::run_modify(peer.same_build, *tramp, *f, Some(&v), out)?;
                *v = out.clone();
            }
            (State::Namespace(ns), _) => {
                let mut ns = lock(ns);
                match *req {
                    R::NsGet { name, .. } => match ns.get(name) {
                        None => out.push(0),
                        Some((types, value)) => {
                            out.push(1);
                            crate::wire::codec::encode_into(types.as_str(), out).expect("a str always encodes");
                            out.extend_from_slice(value);
                        }
                    },
                    R::NsSet { name, types, value, .. } => {
                        ns.insert(name.to_string(), (types.to_string(), value.to_vec()));
                    }
                    R::NsRemove { name, .. } => put_bool(out, ns.remove(name).is_some()),
                    R::NsNames { .. } => {
                        put_varint(out, ns.len() as u64);
                        for k in ns.keys() {
                            crate::wire::codec::encode_into(k.as_str(), out).expect("a str always encodes");
                        }
                    }
                    _ => return Err(self.wrong(id, "namespace")),
                }
            }
            (State::Queue { q, not_empty, not_full, all_done }, _) => {
                return self.queue_op(id, req, peer, out, (q, not_empty, not_full, all_done));
            }
            (State::Lock(g), R::Acquire { thread, wait, .. }) => {
                let me = (peer.session, *thread);
                let reentrant = self.kind == Kind::RLock;
                let st = lock(&g.state);
                let (mut st, ok) = wait_while(&g.changed, st, *wait, peer, |s| {
                    s.owner.is_some() && !(reentrant && s.owner == Some(me))
                })?;
                if ok {
                    st.owner = Some(me);
                    st.depth += 1;
                }
                put_bool(out, ok);
            }
            (State::Lock(g), R::Release { thread, .. }) => {
                let me = (peer.session, *thread);
                let mut st = lock(&g.state);
                match st.owner {
                    None => return Err(misuse("release of an unlocked lock")),
                    // Python lets any thread release a plain Lock; an RLock only its owner.
                    Some(o) if self.kind == Kind::RLock && o != me => {
                        return Err(misuse("cannot release an rlock held by another thread or process"));
                    }
                    Some(_) => {}
                }
                st.depth -= 1;
                if st.depth == 0 || self.kind == Kind::Lock {
                    st.owner = None;
                    st.depth = 0;
                    g.changed.notify_one();
                }
            }
            (State::Semaphore(g), R::Acquire { wait, .. }) => {
                let st = lock(&g.state);
                let (mut st, ok) = wait_while(&g.changed, st, *wait, peer, |s| s.value == 0)?;
                if ok {
                    st.value -= 1;
                }
                put_bool(out, ok);
            }
            (State::Semaphore(g), R::Release { .. }) => {
                let mut st = lock(&g.state);
                if st.ceiling.is_some_and(|c| st.value >= c) {
                    return Err(misuse("a bounded semaphore was released too many times"));
                }
                st.value += 1;
                g.changed.notify_one();
            }
            (State::Semaphore(g), R::SemValue { .. }) => put_varint(out, lock(&g.state).value),
            (State::Event(g), R::EventSet { .. }) => {
                *lock(&g.state) = true;
                g.changed.notify_all();
            }
            (State::Event(g), R::EventClear { .. }) => *lock(&g.state) = false,
            (State::Event(g), R::EventIsSet { .. }) => put_bool(out, *lock(&g.state)),
            (State::Event(g), R::EventWait { wait, .. }) => {
                let (_set, ok) = wait_while(&g.changed, lock(&g.state), *wait, peer, |set| !*set)?;
                put_bool(out, ok);
            }
            (State::Condition(g), _) => return self.condition_op(id, g, req, peer, out),
            (State::Barrier(g), _) => return self.barrier_op(id, g, req, peer, out),
            (State::Custom(m), R::Call { tramp, method, arg, .. }) => {
                let mut obj = lock(m);
                let obj = obj.as_mut().ok_or(RemoteError::UnknownObject(id))?;
                functions::run_call(peer.same_build, *tramp, *method, obj.as_mut(), arg, out)?;
            }
            _ => return Err(self.wrong(id, request_target(req))),
        }
        Ok(Done::Reply)
    }

    fn queue_op(
        &self,
        id: u64,
        req: &Request<'_>,
        peer: &Peer<'_>,
        out: &mut Vec<u8>,
        (q, not_empty, not_full, all_done): (&Mutex<QueueState>, &Condvar, &Condvar, &Condvar),
    ) -> Result<Done, RemoteError> {
        let joinable = self.kind == Kind::JoinableQueue;
        match *req {
            Request::QueuePut { wait, item, .. } => {
                let (mut st, ok) =
                    wait_while(not_full, lock(q), wait, peer, |s| s.maxsize > 0 && s.items.len() as u64 >= s.maxsize)?;
                if !ok {
                    return Err(RemoteError::Full);
                }
                st.items.push_back(item.to_vec());
                st.unfinished += 1;
                not_empty.notify_one();
            }
            Request::QueueGet { wait, .. } => {
                let (mut st, ok) = wait_while(not_empty, lock(q), wait, peer, |s| s.items.is_empty())?;
                if !ok {
                    return Err(RemoteError::Empty);
                }
                let item = st.items.pop_front().expect("checked non-empty");
                not_full.notify_one();
                out.extend_from_slice(&item);
                return Ok(Done::ReplyOrRequeue);
            }
            Request::QueueLen { .. } => {
                let st = lock(q);
                put_varint(out, st.items.len() as u64);
                put_varint(out, st.maxsize);
            }
            Request::QueueTaskDone { .. } if joinable => {
                let mut st = lock(q);
                if st.unfinished == 0 {
                    return Err(misuse("task_done() called more times than there were items"));
                }
                st.unfinished -= 1;
                if st.unfinished == 0 {
                    all_done.notify_all();
                }
            }
            Request::QueueJoin { wait, .. } if joinable => {
                let (_st, ok) = wait_while(all_done, lock(q), wait, peer, |s| s.unfinished > 0)?;
                put_bool(out, ok);
            }
            _ => return Err(self.wrong(id, request_target(req))),
        }
        Ok(Done::Reply)
    }

    /// Puts back an item whose reply could not be delivered.
    pub(crate) fn requeue(&self, item: Vec<u8>) {
        if let State::Queue { q, not_empty, .. } = &self.state {
            lock(q).items.push_front(item);
            not_empty.notify_one();
        }
    }

    fn condition_op(
        &self,
        id: u64,
        g: &Guarded<CondState>,
        req: &Request<'_>,
        peer: &Peer<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Done, RemoteError> {
        match *req {
            Request::Acquire { thread, wait, .. } => {
                let me = (peer.session, thread);
                let (mut st, ok) = wait_while(&g.changed, lock(&g.state), wait, peer, |s| {
                    s.lock.owner.is_some() && s.lock.owner != Some(me)
                })?;
                if ok {
                    st.lock.owner = Some(me);
                    st.lock.depth += 1;
                }
                put_bool(out, ok);
            }
            Request::Release { thread, .. } => {
                let mut st = lock(&g.state);
                if st.lock.owner != Some((peer.session, thread)) {
                    return Err(misuse("cannot release a condition this thread does not hold"));
                }
                st.lock.depth -= 1;
                if st.lock.depth == 0 {
                    st.lock.owner = None;
                    g.changed.notify_all();
                }
            }
            Request::CondWait { thread, wait, .. } => {
                let me = (peer.session, thread);
                let mut st = lock(&g.state);
                if st.lock.owner != Some(me) {
                    return Err(misuse("cannot wait on a condition this thread does not hold"));
                }
                let depth = std::mem::take(&mut st.lock.depth);
                st.lock.owner = None;
                let ticket = st.next_ticket;
                st.next_ticket += 1;
                st.waiting.push_back(ticket);
                g.changed.notify_all();
                let waited = wait_while(&g.changed, st, wait, peer, |s| !s.notified.contains(&ticket));
                let (mut st, notified) = match waited {
                    Ok(r) => r,
                    Err(e) => {
                        let mut st = lock(&g.state);
                        st.waiting.retain(|&t| t != ticket);
                        st.notified.remove(&ticket);
                        return Err(e);
                    }
                };
                st.notified.remove(&ticket);
                st.waiting.retain(|&t| t != ticket);
                // Take the lock back before returning, as Python's `wait` does.
                let (mut st, _) = wait_while(&g.changed, st, Wait::Forever, peer, |s| s.lock.owner.is_some())?;
                st.lock.owner = Some(me);
                st.lock.depth = depth;
                put_bool(out, notified);
            }
            Request::CondNotify { thread, n, .. } => {
                let mut st = lock(&g.state);
                if st.lock.owner != Some((peer.session, thread)) {
                    return Err(misuse("cannot notify on a condition this thread does not hold"));
                }
                for _ in 0..n {
                    let Some(t) = st.waiting.pop_front() else { break };
                    st.notified.insert(t);
                }
                g.changed.notify_all();
            }
            _ => return Err(self.wrong(id, request_target(req))),
        }
        Ok(Done::Reply)
    }

    fn barrier_op(
        &self,
        id: u64,
        g: &Guarded<BarrierState>,
        req: &Request<'_>,
        peer: &Peer<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Done, RemoteError> {
        match *req {
            Request::BarrierWait { wait, .. } => {
                let mut st = lock(&g.state);
                if st.broken {
                    return Err(RemoteError::BrokenBarrier);
                }
                let index = st.count;
                st.count += 1;
                if st.count == st.parties {
                    st.count = 0;
                    st.generation += 1;
                    g.changed.notify_all();
                    put_varint(out, index);
                    return Ok(Done::Reply);
                }
                let gen_ = st.generation;
                let waited = wait_while(&g.changed, st, wait, peer, |s| s.generation == gen_ && !s.broken);
                let (mut st, passed) = match waited {
                    Ok(r) => r,
                    Err(e) => {
                        // A waiter that vanished breaks the barrier, as a timeout does.
                        let mut st = lock(&g.state);
                        if st.generation == gen_ {
                            st.count -= 1;
                            st.broken = true;
                            g.changed.notify_all();
                        } else {
                            Self::left_reset(&mut st, gen_);
                        }
                        return Err(e);
                    }
                };
                if st.generation != gen_ {
                    if Self::left_reset(&mut st, gen_) {
                        return Err(RemoteError::BrokenBarrier);
                    }
                    put_varint(out, index);
                } else {
                    st.count -= 1;
                    if !passed {
                        // Python: a wait that times out breaks the barrier for everyone.
                        st.broken = true;
                        g.changed.notify_all();
                    }
                    return Err(RemoteError::BrokenBarrier);
                }
            }
            Request::BarrierAbort { .. } => {
                lock(&g.state).broken = true;
                g.changed.notify_all();
            }
            Request::BarrierReset { .. } => {
                let mut st = lock(&g.state);
                if st.count > 0 {
                    let (generation, count) = (st.generation, st.count);
                    st.reset.insert(generation, count);
                }
                st.generation += 1;
                st.count = 0;
                st.broken = false;
                g.changed.notify_all();
            }
            Request::BarrierState { .. } => {
                let st = lock(&g.state);
                put_varint(out, st.parties);
                put_varint(out, st.count);
                put_bool(out, st.broken);
            }
            _ => return Err(self.wrong(id, request_target(req))),
        }
        Ok(Done::Reply)
    }

    /// Counts off a waiter of generation `gen_` if a reset ended it; returns whether one did.
    fn left_reset(st: &mut BarrierState, gen_: u64) -> bool {
        let Some(left) = st.reset.get_mut(&gen_) else { return false };
        *left -= 1;
        if *left == 0 {
            st.reset.remove(&gen_);
        }
        true
    }

    /// Releases whatever lock `session` holds on this object (its process is gone).
    pub(crate) fn release_session(&self, session: [u8; 16]) {
        match &self.state {
            State::Lock(g) => {
                let mut st = lock(&g.state);
                if st.owner.is_some_and(|o| o.0 == session) {
                    st.owner = None;
                    st.depth = 0;
                    g.changed.notify_all();
                }
            }
            State::Condition(g) => {
                let mut st = lock(&g.state);
                if st.lock.owner.is_some_and(|o| o.0 == session) {
                    st.lock.owner = None;
                    st.lock.depth = 0;
                    g.changed.notify_all();
                }
            }
            _ => {}
        }
    }
}

/// The kind of object a request is meant for, for "wrong type" messages.
fn request_target(req: &Request<'_>) -> &'static str {
    use Request as R;
    match req {
        R::DictGet { .. }
        | R::DictGetMany { .. }
        | R::DictInsert { .. }
        | R::DictSet { .. }
        | R::DictRemove { .. }
        | R::DictContains { .. }
        | R::DictLen { .. }
        | R::DictKeys { .. }
        | R::DictValues { .. }
        | R::DictItems { .. }
        | R::DictUpdate { .. }
        | R::DictClear { .. }
        | R::DictModify { .. } => "dict",
        R::SeqPush { .. }
        | R::SeqPop { .. }
        | R::SeqGet { .. }
        | R::SeqSet { .. }
        | R::SeqLen { .. }
        | R::SeqExtend { .. }
        | R::SeqSnapshot { .. }
        | R::SeqClear { .. }
        | R::SeqInsert { .. }
        | R::SeqRemove { .. }
        | R::SeqModify { .. } => "list or array",
        R::ValueGet { .. } | R::ValueSet { .. } | R::ValueModify { .. } => "value",
        R::NsGet { .. } | R::NsSet { .. } | R::NsRemove { .. } | R::NsNames { .. } => "namespace",
        R::QueuePut { .. } | R::QueueGet { .. } | R::QueueLen { .. } => "queue",
        R::QueueTaskDone { .. } | R::QueueJoin { .. } => "joinable queue",
        R::Acquire { .. } | R::Release { .. } => "lock, rlock, semaphore or condition",
        R::SemValue { .. } => "semaphore",
        R::EventSet { .. } | R::EventClear { .. } | R::EventIsSet { .. } | R::EventWait { .. } => "event",
        R::CondWait { .. } | R::CondNotify { .. } => "condition",
        R::BarrierWait { .. } | R::BarrierAbort { .. } | R::BarrierReset { .. } | R::BarrierState { .. } => "barrier",
        R::Call { .. } => "custom object",
        _ => "object",
    }
}
