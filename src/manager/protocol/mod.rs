//! The manager's wire protocol: what a client asks and how the server reads it.
//!
//! Every request is one frame (see [`crate::wire`]); its kind byte names the operation and
//! its payload is a fixed little-endian layout (`layout.rs`): object ids `u64`, lengths
//! `u32` followed by that many bytes, offsets `i64`, waits `u64` microseconds
//! ([`FOREVER`](layout::FOREVER) = no limit). Stored keys and values are the postcard
//! bytes of the user's values: the server never decodes them, so it needs no types, and
//! replies concatenate them into postcard shapes (`Option<T>`, `Vec<T>`) the typed proxy
//! decodes at once.
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

use serde::{Deserialize, Serialize};

use crate::wire::kinds;

/// Frame kinds of the connection set-up (before any request): authentication's
/// (`wire::kinds::AUTH_*`, used by `crate::auth`), then the session's.
pub(crate) const KIND_SESSION_HELLO: u8 = kinds::MANAGER_SESSION_HELLO;
pub(crate) const KIND_SESSION_READY: u8 = kinds::MANAGER_SESSION_READY;

/// Frame kinds of replies.
pub(crate) const KIND_OK: u8 = kinds::MANAGER_OK;
pub(crate) const KIND_ERR: u8 = kinds::MANAGER_ERR;
/// The failure of a posted request (one whose success is not answered).
pub(crate) const KIND_POSTED_ERR: u8 = kinds::MANAGER_POSTED_ERR;
/// A client's request to open a shared-memory slot (its memfd attached); see `slot`.
pub(crate) const KIND_SLOT_OPEN: u8 = kinds::MANAGER_SLOT_OPEN;

/// Frame kinds between a started server and the process that started it.
pub(crate) const KIND_SERVER_STARTED: u8 = kinds::MANAGER_SERVER_STARTED;
pub(crate) const KIND_SERVER_FAILED: u8 = kinds::MANAGER_SERVER_FAILED;
pub(crate) const KIND_SERVER_SHUTDOWN: u8 = kinds::MANAGER_SERVER_SHUTDOWN;

/// Bumped whenever a request or reply changes shape.
pub(crate) const MANAGER_PROTOCOL: u16 = 2;

/// The shared layout, below every kind's file.
mod layout;

pub(crate) mod custom;
pub(crate) mod dict;
pub(crate) mod namespace;
pub(crate) mod queue;
pub(crate) mod registry;
pub(crate) mod seq;
pub(crate) mod sync;
pub(crate) mod value;

pub use layout::Kind;
use layout::{Parse, Reader, unknown};
pub(crate) use layout::{RemoteError, Travel, Wait, Writer};
pub(crate) use registry::{Init, RegistryOp};

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
/// if kinds' ranges overlap or reach the connection's own frame kinds
/// (`wire::kinds::MANAGER_REQUESTS_BELOW` and up), or an operation lies outside its kind's
/// range.
static TRAVEL: [Travel; 256] = travel_table();

const fn travel_table() -> [Travel; 256] {
    let mut table = [Travel::Unknown; 256];
    let mut k = 0;
    while k < KINDS.len() {
        let (first, last, ops) = KINDS[k];
        assert!(first <= last && last < kinds::MANAGER_REQUESTS_BELOW, "a kind's range reaches the frame kinds");
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

/// Parses one request; never panics, whatever the bytes.
pub(crate) fn decode_request(code: u8, payload: &[u8]) -> Result<Request<'_>, RemoteError> {
    if travel(code) == Travel::Unknown {
        return Err(unknown(code));
    }
    let mut r = Reader::new(payload);
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
    use std::time::Duration;

    use super::layout::FOREVER;
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
