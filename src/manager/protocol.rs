//! The manager's wire protocol: what a client asks and how the server reads it.
//!
//! Every request is one frame (see [`crate::wire`]); its kind byte names the operation and
//! its payload is a fixed little-endian layout: object ids `u64`, lengths `u32` followed
//! by that many bytes, offsets `i64`, waits `u64` microseconds ([`FOREVER`] = no limit).
//! Stored keys and values are the postcard bytes of the user's values: the server never
//! decodes them, so it needs no types, and replies concatenate them into postcard shapes
//! (`Option<T>`, `Vec<T>`) the typed proxy decodes at once.
//!
//! [`decode_request`] is the only reader of client bytes after authentication: it checks
//! every length against the payload and rejects trailing bytes, so any input is either a
//! [`Request`] or a [`RemoteError::BadRequest`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A wait of this many microseconds means "no limit".
pub(crate) const FOREVER: u64 = u64::MAX;

/// Frame kinds of the connection set-up (before any request).
pub(crate) const KIND_CHALLENGE: u8 = 0xE0;
pub(crate) const KIND_ANSWER: u8 = 0xE1;
pub(crate) const KIND_VERDICT: u8 = 0xE2;
pub(crate) const KIND_SESSION_HELLO: u8 = 0xE3;
pub(crate) const KIND_SESSION_READY: u8 = 0xE4;

/// Frame kinds of replies.
pub(crate) const KIND_OK: u8 = 0xF0;
pub(crate) const KIND_ERR: u8 = 0xF1;
/// The failure of a posted request (one whose success is not answered).
pub(crate) const KIND_POSTED_ERR: u8 = 0xF2;
/// A client's request to open a shared-memory slot (its memfd attached); see `slot`.
pub(crate) const KIND_SLOT_OPEN: u8 = 0xE5;

/// Frame kinds between a started server and the process that started it.
pub(crate) const KIND_SERVER_STARTED: u8 = 0xC1;
pub(crate) const KIND_SERVER_FAILED: u8 = 0xC2;
pub(crate) const KIND_SERVER_SHUTDOWN: u8 = 0xC3;

/// Bumped whenever a request or reply changes shape.
pub(crate) const MANAGER_PROTOCOL: u16 = 1;

/// Operation codes (the frame kind of a request).
pub(crate) mod op {
    pub(crate) const CREATE: u8 = 0x01;
    pub(crate) const INCREF: u8 = 0x02;
    pub(crate) const DECREF: u8 = 0x03;
    pub(crate) const TRANSIT: u8 = 0x04;
    pub(crate) const ADOPT: u8 = 0x05;
    pub(crate) const PUBLISH: u8 = 0x06;
    pub(crate) const LOOKUP: u8 = 0x07;
    pub(crate) const UNPUBLISH: u8 = 0x08;
    pub(crate) const COUNT: u8 = 0x09;
    pub(crate) const WAIT_COUNT: u8 = 0x0A;
    pub(crate) const PING: u8 = 0x0B;

    pub(crate) const D_GET: u8 = 0x20;
    pub(crate) const D_INSERT: u8 = 0x21;
    pub(crate) const D_SET: u8 = 0x22;
    pub(crate) const D_REMOVE: u8 = 0x23;
    pub(crate) const D_CONTAINS: u8 = 0x24;
    pub(crate) const D_LEN: u8 = 0x25;
    pub(crate) const D_KEYS: u8 = 0x26;
    pub(crate) const D_VALUES: u8 = 0x27;
    pub(crate) const D_ITEMS: u8 = 0x28;
    pub(crate) const D_UPDATE: u8 = 0x29;
    pub(crate) const D_CLEAR: u8 = 0x2A;
    pub(crate) const D_MODIFY: u8 = 0x2B;
    pub(crate) const D_GET_MANY: u8 = 0x2C;

    pub(crate) const S_PUSH: u8 = 0x40;
    pub(crate) const S_POP: u8 = 0x41;
    pub(crate) const S_GET: u8 = 0x42;
    pub(crate) const S_SET: u8 = 0x43;
    pub(crate) const S_LEN: u8 = 0x44;
    pub(crate) const S_EXTEND: u8 = 0x45;
    pub(crate) const S_SNAPSHOT: u8 = 0x46;
    pub(crate) const S_CLEAR: u8 = 0x47;
    pub(crate) const S_INSERT: u8 = 0x48;
    pub(crate) const S_REMOVE: u8 = 0x49;
    pub(crate) const S_MODIFY: u8 = 0x4A;

    pub(crate) const V_GET: u8 = 0x50;
    pub(crate) const V_SET: u8 = 0x51;
    pub(crate) const V_MODIFY: u8 = 0x52;

    pub(crate) const N_GET: u8 = 0x58;
    pub(crate) const N_SET: u8 = 0x59;
    pub(crate) const N_REMOVE: u8 = 0x5A;
    pub(crate) const N_NAMES: u8 = 0x5B;

    pub(crate) const Q_PUT: u8 = 0x60;
    pub(crate) const Q_GET: u8 = 0x61;
    pub(crate) const Q_LEN: u8 = 0x62;
    pub(crate) const Q_TASK_DONE: u8 = 0x63;
    pub(crate) const Q_JOIN: u8 = 0x64;

    pub(crate) const L_ACQUIRE: u8 = 0x70;
    pub(crate) const L_RELEASE: u8 = 0x71;
    pub(crate) const SEM_VALUE: u8 = 0x72;
    pub(crate) const E_SET: u8 = 0x74;
    pub(crate) const E_CLEAR: u8 = 0x75;
    pub(crate) const E_IS_SET: u8 = 0x76;
    pub(crate) const E_WAIT: u8 = 0x77;
    pub(crate) const C_WAIT: u8 = 0x78;
    pub(crate) const C_NOTIFY: u8 = 0x79;
    pub(crate) const B_WAIT: u8 = 0x7A;
    pub(crate) const B_ABORT: u8 = 0x7B;
    pub(crate) const B_RESET: u8 = 0x7C;
    pub(crate) const B_STATE: u8 = 0x7D;

    pub(crate) const CALL: u8 = 0x90;
}

/// What kind of object lives behind an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Kind {
    Dict = 1,
    List = 2,
    Array = 3,
    Queue = 4,
    JoinableQueue = 5,
    Value = 6,
    Namespace = 7,
    Lock = 8,
    RLock = 9,
    Semaphore = 10,
    Event = 11,
    Condition = 12,
    Barrier = 13,
    Custom = 14,
}

impl Kind {
    pub(crate) fn from_u8(b: u8) -> Option<Kind> {
        use Kind::*;
        Some(match b {
            1 => Dict,
            2 => List,
            3 => Array,
            4 => Queue,
            5 => JoinableQueue,
            6 => Value,
            7 => Namespace,
            8 => Lock,
            9 => RLock,
            10 => Semaphore,
            11 => Event,
            12 => Condition,
            13 => Barrier,
            14 => Custom,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Dict => "dict",
            Kind::List => "list",
            Kind::Array => "array",
            Kind::Queue => "queue",
            Kind::JoinableQueue => "joinable queue",
            Kind::Value => "value",
            Kind::Namespace => "namespace",
            Kind::Lock => "lock",
            Kind::RLock => "rlock",
            Kind::Semaphore => "semaphore",
            Kind::Event => "event",
            Kind::Condition => "condition",
            Kind::Barrier => "barrier",
            Kind::Custom => "custom object",
        }
    }
}

/// An error the server sends back instead of a result. The connection stays usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RemoteError {
    /// The request's bytes do not parse.
    BadRequest(String),
    /// No object has this id (never created, or freed when its last proxy went).
    UnknownObject(u64),
    /// The object is of another kind or element type than the request needs.
    WrongType { id: u64, expected: String, found: String },
    /// A sequence index past the end.
    IndexOutOfRange { index: u64, len: u64 },
    /// A queue had nothing to get within the wait.
    Empty,
    /// A bounded queue had no room within the wait.
    Full,
    /// The barrier was broken (aborted, reset or timed out).
    BrokenBarrier,
    /// A call that does not fit the object's state (releasing an unlocked lock, ...).
    Misuse(String),
    /// A user function run in the server panicked; the object is unchanged for `modify`.
    Panicked(String),
    /// A function named by offset cannot be run: the client is another build.
    DifferentBuild,
    /// No object is published under this name.
    UnknownName(String),
    /// A value the server had to decode (a `modify` or a method argument) did not decode.
    Codec(String),
    /// Internal: the peer hung up during a blocking call; never sent.
    PeerGone,
}

/// How long a blocking operation may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Do not wait.
    No,
    /// Wait at most this long.
    For(Duration),
    /// Wait without limit.
    Forever,
}

impl Wait {
    pub(crate) fn from_micros(us: u64) -> Wait {
        match us {
            0 => Wait::No,
            FOREVER => Wait::Forever,
            us => Wait::For(Duration::from_micros(us)),
        }
    }

    pub(crate) fn micros(timeout: Option<Duration>) -> u64 {
        match timeout {
            None => FOREVER,
            Some(d) => u64::try_from(d.as_micros()).unwrap_or(FOREVER - 1).min(FOREVER - 1),
        }
    }
}

/// What a new object starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Init<'a> {
    /// Dict, namespace, event, lock, rlock, condition: nothing.
    Empty,
    /// A list or array with these elements.
    Items(Vec<&'a [u8]>),
    /// A queue of this capacity (0: unbounded).
    Queue { maxsize: u64 },
    /// A value.
    Value(&'a [u8]),
    /// A semaphore's counter and, if bounded, its ceiling.
    Semaphore { value: u64, bounded: bool },
    /// A barrier for this many parties.
    Barrier { parties: u64 },
    /// A user type built in the server by the function at `ctor` from `init`.
    Custom { ctor: i64, init: &'a [u8] },
}

/// One decoded request. Byte slices borrow the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    Create { kind: Kind, types: &'a str, init: Init<'a> },
    Incref { obj: u64, kind: Kind, types: &'a str },
    Decref { obj: u64 },
    Transit { obj: u64 },
    Adopt { obj: u64, token: u64, kind: Kind, types: &'a str },
    Publish { name: &'a str, obj: u64 },
    Lookup { name: &'a str, kind: Kind, types: &'a str },
    Unpublish { name: &'a str },
    Count,
    Ping,
    WaitCount { max: u64, wait: Wait },

    DictGet { obj: u64, key: &'a [u8] },
    DictGetMany { obj: u64, keys: Vec<&'a [u8]> },
    DictInsert { obj: u64, key: &'a [u8], value: &'a [u8] },
    DictSet { obj: u64, key: &'a [u8], value: &'a [u8] },
    DictRemove { obj: u64, key: &'a [u8] },
    DictContains { obj: u64, key: &'a [u8] },
    DictLen { obj: u64 },
    DictKeys { obj: u64 },
    DictValues { obj: u64 },
    DictItems { obj: u64 },
    DictUpdate { obj: u64, pairs: Vec<(&'a [u8], &'a [u8])> },
    DictClear { obj: u64 },
    DictModify { obj: u64, key: &'a [u8], tramp: i64, f: i64 },

    SeqPush { obj: u64, value: &'a [u8] },
    SeqPop { obj: u64 },
    SeqGet { obj: u64, index: u64 },
    SeqSet { obj: u64, index: u64, value: &'a [u8] },
    SeqLen { obj: u64 },
    SeqExtend { obj: u64, values: Vec<&'a [u8]> },
    SeqSnapshot { obj: u64 },
    SeqClear { obj: u64 },
    SeqInsert { obj: u64, index: u64, value: &'a [u8] },
    SeqRemove { obj: u64, index: u64 },
    SeqModify { obj: u64, index: u64, tramp: i64, f: i64 },

    ValueGet { obj: u64 },
    ValueSet { obj: u64, value: &'a [u8] },
    ValueModify { obj: u64, tramp: i64, f: i64 },

    NsGet { obj: u64, name: &'a str },
    NsSet { obj: u64, name: &'a str, types: &'a str, value: &'a [u8] },
    NsRemove { obj: u64, name: &'a str },
    NsNames { obj: u64 },

    QueuePut { obj: u64, wait: Wait, item: &'a [u8] },
    QueueGet { obj: u64, wait: Wait },
    QueueLen { obj: u64 },
    QueueTaskDone { obj: u64 },
    QueueJoin { obj: u64, wait: Wait },

    Acquire { obj: u64, thread: u64, wait: Wait },
    Release { obj: u64, thread: u64 },
    SemValue { obj: u64 },
    EventSet { obj: u64 },
    EventClear { obj: u64 },
    EventIsSet { obj: u64 },
    EventWait { obj: u64, wait: Wait },
    CondWait { obj: u64, thread: u64, wait: Wait },
    CondNotify { obj: u64, thread: u64, n: u64 },
    BarrierWait { obj: u64, wait: Wait },
    BarrierAbort { obj: u64 },
    BarrierReset { obj: u64 },
    BarrierState { obj: u64 },

    Call { obj: u64, tramp: i64, method: i64, arg: &'a [u8] },
}

impl Request<'_> {
    /// Requests whose success the server does not answer (the client does not wait);
    /// a failure is answered with a [`KIND_POSTED_ERR`] frame.
    pub(crate) fn is_posted(&self) -> bool {
        matches!(self, Request::Decref { .. } | Request::DictSet { .. } | Request::SeqPush { .. })
    }
}

/// Reads a request payload field by field; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

type Parse<T> = Result<T, RemoteError>;

fn bad(what: impl Into<String>) -> RemoteError {
    RemoteError::BadRequest(what.into())
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Parse<&'a [u8]> {
        if self.buf.len() < n {
            return Err(bad(format!("{what}: needs {n} bytes, {} left", self.buf.len())));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self, what: &str) -> Parse<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Parse<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &str) -> Parse<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn i64(&mut self, what: &str) -> Parse<i64> {
        Ok(i64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn obj(&mut self) -> Parse<u64> {
        self.u64("object id")
    }
    fn wait(&mut self) -> Parse<Wait> {
        Ok(Wait::from_micros(self.u64("wait")?))
    }
    fn bytes(&mut self, what: &str) -> Parse<&'a [u8]> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    fn str(&mut self, what: &str) -> Parse<&'a str> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| bad(format!("{what} is not UTF-8")))
    }
    fn kind(&mut self) -> Parse<Kind> {
        let b = self.u8("kind")?;
        Kind::from_u8(b).ok_or_else(|| bad(format!("unknown object kind {b}")))
    }
    /// A count followed by that many byte strings. The count cannot exceed what the
    /// payload could hold, so a lying count allocates nothing.
    fn list(&mut self, what: &str) -> Parse<Vec<&'a [u8]>> {
        let n = self.u32(what)? as usize;
        if n > self.buf.len() / 4 {
            return Err(bad(format!("{what}: {n} elements cannot fit in {} bytes", self.buf.len())));
        }
        (0..n).map(|_| self.bytes(what)).collect()
    }
    fn pairs(&mut self, what: &str) -> Parse<Vec<(&'a [u8], &'a [u8])>> {
        let n = self.u32(what)? as usize;
        if n > self.buf.len() / 8 {
            return Err(bad(format!("{what}: {n} pairs cannot fit in {} bytes", self.buf.len())));
        }
        (0..n).map(|_| Ok((self.bytes(what)?, self.bytes(what)?))).collect()
    }
    fn end(self) -> Parse<()> {
        if self.buf.is_empty() { Ok(()) } else { Err(bad(format!("{} unexpected bytes at the end", self.buf.len()))) }
    }
}

/// Parses one request; never panics, whatever the bytes.
pub(crate) fn decode_request(kind: u8, payload: &[u8]) -> Result<Request<'_>, RemoteError> {
    use Request as R;
    let mut r = Reader { buf: payload };
    let req = match kind {
        op::CREATE => {
            let kind = r.kind()?;
            let types = r.str("type signature")?;
            let init = match kind {
                Kind::Dict | Kind::Namespace | Kind::Event | Kind::Lock | Kind::RLock | Kind::Condition => Init::Empty,
                Kind::List | Kind::Array => Init::Items(r.list("elements")?),
                Kind::Queue | Kind::JoinableQueue => Init::Queue { maxsize: r.u64("maxsize")? },
                Kind::Value => Init::Value(r.bytes("value")?),
                Kind::Semaphore => {
                    let value = r.u64("semaphore value")?;
                    let bounded = match r.u8("bounded flag")? {
                        0 => false,
                        1 => true,
                        b => return Err(bad(format!("bounded flag {b} is neither 0 nor 1"))),
                    };
                    Init::Semaphore { value, bounded }
                }
                Kind::Barrier => Init::Barrier { parties: r.u64("parties")? },
                Kind::Custom => Init::Custom { ctor: r.i64("constructor")?, init: r.bytes("initial value")? },
            };
            R::Create { kind, types, init }
        }
        op::INCREF => R::Incref { obj: r.obj()?, kind: r.kind()?, types: r.str("type signature")? },
        op::DECREF => R::Decref { obj: r.obj()? },
        op::TRANSIT => R::Transit { obj: r.obj()? },
        op::ADOPT => {
            R::Adopt { obj: r.obj()?, token: r.u64("token")?, kind: r.kind()?, types: r.str("type signature")? }
        }
        op::PUBLISH => R::Publish { name: r.str("name")?, obj: r.obj()? },
        op::LOOKUP => R::Lookup { name: r.str("name")?, kind: r.kind()?, types: r.str("type signature")? },
        op::UNPUBLISH => R::Unpublish { name: r.str("name")? },
        op::COUNT => R::Count,
        op::PING => R::Ping,
        op::WAIT_COUNT => R::WaitCount { max: r.u64("count")?, wait: r.wait()? },

        op::D_GET => R::DictGet { obj: r.obj()?, key: r.bytes("key")? },
        op::D_GET_MANY => R::DictGetMany { obj: r.obj()?, keys: r.list("keys")? },
        op::D_INSERT => R::DictInsert { obj: r.obj()?, key: r.bytes("key")?, value: r.bytes("value")? },
        op::D_SET => R::DictSet { obj: r.obj()?, key: r.bytes("key")?, value: r.bytes("value")? },
        op::D_REMOVE => R::DictRemove { obj: r.obj()?, key: r.bytes("key")? },
        op::D_CONTAINS => R::DictContains { obj: r.obj()?, key: r.bytes("key")? },
        op::D_LEN => R::DictLen { obj: r.obj()? },
        op::D_KEYS => R::DictKeys { obj: r.obj()? },
        op::D_VALUES => R::DictValues { obj: r.obj()? },
        op::D_ITEMS => R::DictItems { obj: r.obj()? },
        op::D_UPDATE => R::DictUpdate { obj: r.obj()?, pairs: r.pairs("pairs")? },
        op::D_CLEAR => R::DictClear { obj: r.obj()? },
        op::D_MODIFY => {
            R::DictModify { obj: r.obj()?, key: r.bytes("key")?, tramp: r.i64("function")?, f: r.i64("function")? }
        }

        op::S_PUSH => R::SeqPush { obj: r.obj()?, value: r.bytes("value")? },
        op::S_POP => R::SeqPop { obj: r.obj()? },
        op::S_GET => R::SeqGet { obj: r.obj()?, index: r.u64("index")? },
        op::S_SET => R::SeqSet { obj: r.obj()?, index: r.u64("index")?, value: r.bytes("value")? },
        op::S_LEN => R::SeqLen { obj: r.obj()? },
        op::S_EXTEND => R::SeqExtend { obj: r.obj()?, values: r.list("values")? },
        op::S_SNAPSHOT => R::SeqSnapshot { obj: r.obj()? },
        op::S_CLEAR => R::SeqClear { obj: r.obj()? },
        op::S_INSERT => R::SeqInsert { obj: r.obj()?, index: r.u64("index")?, value: r.bytes("value")? },
        op::S_REMOVE => R::SeqRemove { obj: r.obj()?, index: r.u64("index")? },
        op::S_MODIFY => {
            R::SeqModify { obj: r.obj()?, index: r.u64("index")?, tramp: r.i64("function")?, f: r.i64("function")? }
        }

        op::V_GET => R::ValueGet { obj: r.obj()? },
        op::V_SET => R::ValueSet { obj: r.obj()?, value: r.bytes("value")? },
        op::V_MODIFY => R::ValueModify { obj: r.obj()?, tramp: r.i64("function")?, f: r.i64("function")? },

        op::N_GET => R::NsGet { obj: r.obj()?, name: r.str("name")? },
        op::N_SET => {
            R::NsSet { obj: r.obj()?, name: r.str("name")?, types: r.str("type name")?, value: r.bytes("value")? }
        }
        op::N_REMOVE => R::NsRemove { obj: r.obj()?, name: r.str("name")? },
        op::N_NAMES => R::NsNames { obj: r.obj()? },

        op::Q_PUT => R::QueuePut { obj: r.obj()?, wait: r.wait()?, item: r.bytes("item")? },
        op::Q_GET => R::QueueGet { obj: r.obj()?, wait: r.wait()? },
        op::Q_LEN => R::QueueLen { obj: r.obj()? },
        op::Q_TASK_DONE => R::QueueTaskDone { obj: r.obj()? },
        op::Q_JOIN => R::QueueJoin { obj: r.obj()?, wait: r.wait()? },

        op::L_ACQUIRE => R::Acquire { obj: r.obj()?, thread: r.u64("thread")?, wait: r.wait()? },
        op::L_RELEASE => R::Release { obj: r.obj()?, thread: r.u64("thread")? },
        op::SEM_VALUE => R::SemValue { obj: r.obj()? },
        op::E_SET => R::EventSet { obj: r.obj()? },
        op::E_CLEAR => R::EventClear { obj: r.obj()? },
        op::E_IS_SET => R::EventIsSet { obj: r.obj()? },
        op::E_WAIT => R::EventWait { obj: r.obj()?, wait: r.wait()? },
        op::C_WAIT => R::CondWait { obj: r.obj()?, thread: r.u64("thread")?, wait: r.wait()? },
        op::C_NOTIFY => R::CondNotify { obj: r.obj()?, thread: r.u64("thread")?, n: r.u64("count")? },
        op::B_WAIT => R::BarrierWait { obj: r.obj()?, wait: r.wait()? },
        op::B_ABORT => R::BarrierAbort { obj: r.obj()? },
        op::B_RESET => R::BarrierReset { obj: r.obj()? },
        op::B_STATE => R::BarrierState { obj: r.obj()? },

        op::CALL => {
            R::Call { obj: r.obj()?, tramp: r.i64("function")?, method: r.i64("function")?, arg: r.bytes("argument")? }
        }
        other => return Err(bad(format!("unknown operation {other:#04x}"))),
    };
    r.end()?;
    Ok(req)
}

/// Builds request payloads on the client side, in the layout [`decode_request`] reads.
pub(crate) struct Writer<'a>(pub(crate) &'a mut Vec<u8>);

impl Writer<'_> {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    /// Ends a chain of writes: the payload is complete.
    pub(crate) fn done(&mut self) -> Result<(), crate::wire::CodecError> {
        Ok(())
    }
    /// A length-prefixed postcard encoding of `value`, encoded in place.
    pub(crate) fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<&mut Self, crate::wire::CodecError> {
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        if let Err(e) = crate::wire::codec::encode_into(value, self.0) {
            self.0.truncate(at);
            return Err(e);
        }
        let len = (self.0.len() - at - 4) as u32;
        self.0[at..at + 4].copy_from_slice(&len.to_le_bytes());
        Ok(self)
    }
}

/// The client's first message after authentication.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SessionHello {
    pub(crate) protocol: u16,
    /// The client's build: functions named by offset run only for the same build.
    pub(crate) fingerprint: u64,
    /// Joins an existing session (another connection of the same process), or starts one.
    pub(crate) session: Option<[u8; 16]>,
    pub(crate) pid: u32,
}

/// The server's answer to a [`SessionHello`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SessionReady {
    Ready { session: [u8; 16], max_request: u32, server_pid: u32 },
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_request_reads_back() {
        let mut buf = Vec::new();
        Writer(&mut buf).u64(7).bytes(b"key").bytes(b"value");
        assert_eq!(
            decode_request(op::D_INSERT, &buf).unwrap(),
            Request::DictInsert { obj: 7, key: b"key", value: b"value" }
        );
    }

    #[test]
    fn trailing_bytes_and_short_payloads_are_bad_requests() {
        let mut buf = Vec::new();
        Writer(&mut buf).u64(7).u8(0);
        assert!(matches!(decode_request(op::D_LEN, &buf), Err(RemoteError::BadRequest(m)) if m.contains("unexpected")));
        assert!(matches!(decode_request(op::D_LEN, &buf[..3]), Err(RemoteError::BadRequest(_))));
        assert!(
            matches!(decode_request(0xFF, &[]), Err(RemoteError::BadRequest(m)) if m.contains("unknown operation"))
        );
    }

    #[test]
    fn a_lying_element_count_allocates_nothing() {
        let mut buf = Vec::new();
        Writer(&mut buf).u64(1).u32(u32::MAX);
        assert!(
            matches!(decode_request(op::S_EXTEND, &buf), Err(RemoteError::BadRequest(m)) if m.contains("cannot fit"))
        );
    }

    #[test]
    fn waits_round_trip() {
        assert_eq!(Wait::from_micros(Wait::micros(None)), Wait::Forever);
        assert_eq!(Wait::from_micros(Wait::micros(Some(Duration::ZERO))), Wait::No);
        assert_eq!(
            Wait::from_micros(Wait::micros(Some(Duration::from_millis(3)))),
            Wait::For(Duration::from_millis(3))
        );
        assert_eq!(Wait::from_micros(Wait::micros(Some(Duration::MAX))), Wait::For(Duration::from_micros(FOREVER - 1)));
    }
}
