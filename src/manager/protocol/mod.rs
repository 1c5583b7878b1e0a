//! The manager's wire protocol: what a client asks and how the server reads it.
//!
//! Every request is one frame (see [`crate::wire`]); its kind byte names the operation and
//! its payload is a fixed little-endian layout: object ids `u64`, lengths `u32` followed
//! by that many bytes, offsets `i64`, waits `u64` microseconds ([`FOREVER`] = no limit).
//! Stored keys and values are the postcard bytes of the user's values: the server never
//! decodes them, so it needs no types, and replies concatenate them into postcard shapes
//! (`Option<T>`, `Vec<T>`) the typed proxy decodes at once.
//!
//! Each object kind has a file here with its range of operation codes, each operation's
//! code and how it travels ([`Travel`]: which connection it takes, whether it is
//! answered), its decoded form and its reader. [`decode_request`] is the only reader of
//! client bytes after authentication: it checks every length against the payload and
//! rejects trailing bytes, so any input is either a [`Request`] or a
//! [`RemoteError::BadRequest`].
//!
//! Adding an operation to a kind touches that kind's file here (a code in its range, an
//! `OPS` entry, a variant and its reader), the kind's file in `server/objects/` (what it
//! does), and the proxy (the method that writes it): nothing central.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A wait of this many microseconds means "no limit".
pub(crate) const FOREVER: u64 = u64::MAX;

/// Frame kinds of the connection set-up (before any request): authentication's
/// (`wire::kinds::AUTH_*`, 0xE0 to 0xE2), then the session's.
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
pub(crate) const MANAGER_PROTOCOL: u16 = 2;

pub(crate) mod custom;
pub(crate) mod dict;
pub(crate) mod namespace;
pub(crate) mod queue;
pub(crate) mod registry;
pub(crate) mod seq;
pub(crate) mod sync;
pub(crate) mod value;

pub(crate) use registry::{Init, RegistryOp};

/// How a request travels, which decides the connection it takes and whether it is
/// answered. Each kind's file lists its operations with theirs (its `OPS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Travel {
    /// No operation has this code.
    Unknown,
    /// A request and its reply on the process's primary connection.
    Call,
    /// Changes nothing and never waits: may also go through a shared-memory slot.
    Read,
    /// Its success is not answered, so the client does not wait; a failure is answered
    /// with a [`KIND_POSTED_ERR`] frame.
    Posted,
    /// May wait in the server: goes on a connection of its own.
    Blocking,
}

/// A kind's first and last operation code and its operations.
type KindOps = (u8, u8, &'static [(u8, Travel)]);

/// Every kind's range of operation codes (what [`decode_request`] dispatches on) and its
/// operations.
const KINDS: [KindOps; 8] = [
    (registry::FIRST, registry::LAST, registry::OPS),
    (dict::FIRST, dict::LAST, dict::OPS),
    (seq::FIRST, seq::LAST, seq::OPS),
    (value::FIRST, value::LAST, value::OPS),
    (namespace::FIRST, namespace::LAST, namespace::OPS),
    (queue::FIRST, queue::LAST, queue::OPS),
    (sync::FIRST, sync::LAST, sync::OPS),
    (custom::FIRST, custom::LAST, custom::OPS),
];

/// [`Travel`] by operation code, built from [`KINDS`] at compile time; the build fails
/// if kinds' ranges overlap or reach the connection's own frame kinds (0xC0 and up), or
/// an operation lies outside its kind's range.
static TRAVEL: [Travel; 256] = travel_table();

const fn travel_table() -> [Travel; 256] {
    let mut table = [Travel::Unknown; 256];
    let mut k = 0;
    while k < KINDS.len() {
        let (first, last, ops) = KINDS[k];
        assert!(first <= last && last < 0xC0, "a kind's range reaches the frame kinds");
        assert!(k == 0 || KINDS[k - 1].1 < first, "kinds' ranges overlap or are out of order");
        let mut i = 0;
        while i < ops.len() {
            let (code, travel) = ops[i];
            assert!(first <= code && code <= last, "an operation code lies outside its kind's range");
            assert!(matches!(table[code as usize], Travel::Unknown), "two operations share a code");
            assert!(!matches!(travel, Travel::Unknown), "an operation must say how it travels");
            table[code as usize] = travel;
            i += 1;
        }
        k += 1;
    }
    table
}

/// How the request with this operation code travels.
pub(crate) fn travel(code: u8) -> Travel {
    TRAVEL[code as usize]
}

/// Every operation code, in kind order.
#[cfg(test)]
pub(crate) fn all_codes() -> impl Iterator<Item = u8> {
    KINDS.into_iter().flat_map(|(_, _, ops)| ops).map(|&(code, _)| code)
}

/// One decoded request. Byte slices borrow the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    /// About the registry: objects' lives and names.
    Registry(RegistryOp<'a>),
    /// An operation on the object with this id.
    Object(u64, ObjectOp<'a>),
}

/// An operation on one object, by the kind it is meant for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ObjectOp<'a> {
    Dict(dict::DictOp<'a>),
    Seq(seq::SeqOp<'a>),
    Value(value::ValueOp<'a>),
    Namespace(namespace::NamespaceOp<'a>),
    Queue(queue::QueueOp<'a>),
    Sync(sync::SyncOp),
    Custom(custom::CustomOp<'a>),
}

impl ObjectOp<'_> {
    /// The kind of object this operation is meant for, for "wrong type" messages.
    pub(crate) fn target(&self) -> &'static str {
        match self {
            ObjectOp::Dict(_) => "dict",
            ObjectOp::Seq(_) => "list or array",
            ObjectOp::Value(_) => "value",
            ObjectOp::Namespace(_) => "namespace",
            ObjectOp::Queue(op) => op.target(),
            ObjectOp::Sync(op) => op.target(),
            ObjectOp::Custom(_) => "custom object",
        }
    }
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
pub(crate) fn decode_request(code: u8, payload: &[u8]) -> Result<Request<'_>, RemoteError> {
    if travel(code) == Travel::Unknown {
        return Err(unknown(code));
    }
    let mut r = Reader { buf: payload };
    let req = match code {
        registry::FIRST..=registry::LAST => Request::Registry(registry::decode(code, &mut r)?),
        _ => {
            let obj = r.obj()?;
            Request::Object(obj, decode_object(code, &mut r)?)
        }
    };
    r.end()?;
    Ok(req)
}

/// Reads an object operation: each kind owns a range of codes and reads its own.
fn decode_object<'a>(code: u8, r: &mut Reader<'a>) -> Parse<ObjectOp<'a>> {
    Ok(match code {
        dict::FIRST..=dict::LAST => ObjectOp::Dict(dict::decode(code, r)?),
        seq::FIRST..=seq::LAST => ObjectOp::Seq(seq::decode(code, r)?),
        value::FIRST..=value::LAST => ObjectOp::Value(value::decode(code, r)?),
        namespace::FIRST..=namespace::LAST => ObjectOp::Namespace(namespace::decode(code, r)?),
        queue::FIRST..=queue::LAST => ObjectOp::Queue(queue::decode(code, r)?),
        sync::FIRST..=sync::LAST => ObjectOp::Sync(sync::decode(code, r)?),
        custom::FIRST..=custom::LAST => ObjectOp::Custom(custom::decode(code, r)?),
        other => return Err(unknown(other)),
    })
}

fn unknown(code: u8) -> RemoteError {
    bad(format!("unknown operation {code:#04x}"))
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
    /// `server` names this run of the server: a server started again at the same address
    /// has another, so a client (or a proxy) of the previous one is not mistaken for its.
    Ready {
        session: [u8; 16],
        max_request: u32,
        server_pid: u32,
        server: [u8; 16],
    },
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
            decode_request(dict::D_INSERT, &buf).unwrap(),
            Request::Object(7, ObjectOp::Dict(dict::DictOp::Insert { key: b"key", value: b"value" }))
        );
    }

    #[test]
    fn trailing_bytes_and_short_payloads_are_bad_requests() {
        let mut buf = Vec::new();
        Writer(&mut buf).u64(7).u8(0);
        assert!(
            matches!(decode_request(dict::D_LEN, &buf), Err(RemoteError::BadRequest(m)) if m.contains("unexpected"))
        );
        assert!(matches!(decode_request(dict::D_LEN, &buf[..3]), Err(RemoteError::BadRequest(_))));
        assert!(
            matches!(decode_request(0xFF, &[]), Err(RemoteError::BadRequest(m)) if m.contains("unknown operation"))
        );
    }

    #[test]
    fn a_lying_element_count_allocates_nothing() {
        let mut buf = Vec::new();
        Writer(&mut buf).u64(1).u32(u32::MAX);
        assert!(
            matches!(decode_request(seq::S_EXTEND, &buf), Err(RemoteError::BadRequest(m)) if m.contains("cannot fit"))
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
