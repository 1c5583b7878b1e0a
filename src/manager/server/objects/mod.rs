//! The objects a server holds, and what each operation does to them: one file per kind,
//! each with its state and a handler for its kind's operations (`protocol::<kind>`).
//!
//! Every object has its own lock; an operation holds it only while it runs (blocking
//! operations wait on a condition variable, which releases it), never during socket I/O.
//! Containers store the encoded bytes their clients sent and reply with them unchanged.

mod barrier;
mod common;
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

use std::sync::Mutex;

use crate::manager::protocol::{Init, Kind, ObjectOp, RemoteError};
use common::{Ctx, Guarded};
pub(crate) use common::{Done, Peer};

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
