//! The layout every request shares, below the kinds' files and the dispatch in `mod.rs`:
//! how a request travels ([`Travel`]), the fields a payload is made of ([`Reader`] on the
//! server, [`Writer`] on the client), object kinds, waits and the errors a reply carries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A wait of this many microseconds means "no limit".
pub(crate) const FOREVER: u64 = u64::MAX;

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
    /// with a [`KIND_POSTED_ERR`](super::KIND_POSTED_ERR) frame.
    Posted,
    /// May wait in the server: goes on a connection of its own.
    Blocking,
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
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

pub(super) type Parse<T> = Result<T, RemoteError>;

pub(super) fn bad(what: impl Into<String>) -> RemoteError {
    RemoteError::BadRequest(what.into())
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn take(&mut self, n: usize, what: &str) -> Parse<&'a [u8]> {
        if self.buf.len() < n {
            return Err(bad(format!("{what}: needs {n} bytes, {} left", self.buf.len())));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    pub(super) fn u8(&mut self, what: &str) -> Parse<u8> {
        Ok(self.take(1, what)?[0])
    }
    pub(super) fn u32(&mut self, what: &str) -> Parse<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    pub(super) fn u64(&mut self, what: &str) -> Parse<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    pub(super) fn i64(&mut self, what: &str) -> Parse<i64> {
        Ok(i64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    pub(super) fn obj(&mut self) -> Parse<u64> {
        self.u64("object id")
    }
    pub(super) fn wait(&mut self) -> Parse<Wait> {
        Ok(Wait::from_micros(self.u64("wait")?))
    }
    pub(super) fn bytes(&mut self, what: &str) -> Parse<&'a [u8]> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    pub(super) fn str(&mut self, what: &str) -> Parse<&'a str> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| bad(format!("{what} is not UTF-8")))
    }
    pub(super) fn kind(&mut self) -> Parse<Kind> {
        let b = self.u8("kind")?;
        Kind::from_u8(b).ok_or_else(|| bad(format!("unknown object kind {b}")))
    }
    /// A count followed by that many byte strings. The count cannot exceed what the
    /// payload could hold, so a lying count allocates nothing.
    pub(super) fn list(&mut self, what: &str) -> Parse<Vec<&'a [u8]>> {
        let n = self.u32(what)? as usize;
        if n > self.buf.len() / 4 {
            return Err(bad(format!("{what}: {n} elements cannot fit in {} bytes", self.buf.len())));
        }
        (0..n).map(|_| self.bytes(what)).collect()
    }
    pub(super) fn pairs(&mut self, what: &str) -> Parse<Vec<(&'a [u8], &'a [u8])>> {
        let n = self.u32(what)? as usize;
        if n > self.buf.len() / 8 {
            return Err(bad(format!("{what}: {n} pairs cannot fit in {} bytes", self.buf.len())));
        }
        (0..n).map(|_| Ok((self.bytes(what)?, self.bytes(what)?))).collect()
    }
    pub(super) fn end(self) -> Parse<()> {
        if self.buf.is_empty() { Ok(()) } else { Err(bad(format!("{} unexpected bytes at the end", self.buf.len()))) }
    }
}

pub(super) fn unknown(code: u8) -> RemoteError {
    bad(format!("unknown operation {code:#04x}"))
}

/// Builds request payloads on the client side, in the layout
/// [`decode_request`](super::decode_request) reads.
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
