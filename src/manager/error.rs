//! What a manager call can fail with.

use super::protocol::RemoteError;
use crate::address::Address;
use crate::wire::{CodecError, FrameError};

/// Why a manager operation failed.
///
/// Errors the server reports (an empty queue, an index past the end, a panicking
/// function) leave the connection and the object usable; [`Disconnected`](Self::Disconnected)
/// means the server is gone (shut down, or killed).
///
/// ```
/// use multiproc::ManagerError;
/// use multiproc::manager::DictProxy;
///
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// match manager.lookup::<DictProxy<String, u32>>("nothing by that name") {
///     Err(ManagerError::UnknownName(name)) => assert_eq!(name, "nothing by that name"),
///     other => panic!("expected an unknown name, got {other:?}"),
/// }
/// # Ok::<(), ManagerError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The server process could not be started.
    #[error("cannot start the manager's server: {0}")]
    Start(#[from] crate::Error),
    /// The server could not listen on its address.
    #[error("the manager's server cannot listen on {address}: {message}")]
    Bind {
        /// The address asked for.
        address: Address,
        /// What the operating system said.
        message: String,
    },
    /// No server could be reached at the address.
    #[error("cannot connect to the manager at {address}: {source}")]
    Connect {
        /// The server's address.
        address: Address,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The server refused this process's authkey; it closed the connection.
    #[error("the manager at {address} refused the authkey (wrong key); the connection was closed")]
    AuthenticationFailed {
        /// The server's address.
        address: Address,
    },
    /// The server could not prove that it knows the authkey: it is not the manager meant.
    #[error("the server at {address} could not prove it knows the authkey; not talking to it")]
    ServerNotAuthenticated {
        /// The server's address.
        address: Address,
    },
    /// The peer does not speak the manager protocol (or another version of it).
    #[error("the peer at {address} does not speak this manager protocol: {reason}")]
    Handshake {
        /// The server's address.
        address: Address,
        /// What did not match.
        reason: String,
    },
    /// The connection to the server broke: it was shut down or died.
    #[error("lost the manager at {address}: {source}")]
    Disconnected {
        /// The server's address.
        address: Address,
        /// What the connection reported.
        source: FrameError,
    },
    /// A value could not be encoded, or a reply could not be decoded as the expected type.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A request larger than the server accepts; nothing was sent.
    #[error("request of {len} bytes exceeds the manager's limit of {max} bytes; nothing was sent")]
    TooLarge {
        /// The request's size.
        len: u64,
        /// The server's limit.
        max: u32,
    },
    /// The queue stayed empty for the whole wait (Python's `queue.Empty`).
    #[error("the queue is empty")]
    Empty,
    /// The bounded queue stayed full for the whole wait (Python's `queue.Full`).
    #[error("the queue is full")]
    Full,
    /// The barrier is broken: aborted, reset while waited on, or a wait timed out.
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// A sequence index past the end.
    #[error("index {index} is out of range for a sequence of length {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The sequence's length.
        len: u64,
    },
    /// No object has this id any more (its last proxy was dropped), or never had.
    #[error("the manager holds no object {id} (freed when its last proxy was dropped?)")]
    UnknownObject {
        /// The object id.
        id: u64,
    },
    /// The object is not of the kind or element type the proxy expects.
    #[error("object {id} is a {found}, not a {expected}")]
    WrongType {
        /// The object id.
        id: u64,
        /// What the proxy expects.
        expected: String,
        /// What the object is.
        found: String,
    },
    /// The call does not fit the object's state, e.g. releasing a lock nobody holds.
    #[error("{0}")]
    Misuse(String),
    /// A function run in the server panicked; the object was left unchanged by `modify`.
    #[error("the function run in the manager panicked: {0}")]
    Panicked(String),
    /// The server runs another build of the program, so it cannot run this program's functions.
    #[error(
        "the manager runs another build of this program, so it cannot run functions named by this one \
         (modify, custom objects); rebuild, or run the same binary"
    )]
    DifferentBuild,
    /// Nothing is published under this name.
    #[error("the manager has no object published as `{0}`")]
    UnknownName(String),
    /// The proxy could not connect to its server when this process received it.
    #[error("unusable proxy: {0}")]
    Unusable(String),
    /// The server could not parse a request (a client bug or a different version).
    #[error("the manager rejected a request: {0}")]
    BadRequest(String),
}

impl ManagerError {
    pub(crate) fn from_remote(e: RemoteError) -> ManagerError {
        match e {
            RemoteError::BadRequest(m) => ManagerError::BadRequest(m),
            RemoteError::UnknownObject(id) => ManagerError::UnknownObject { id },
            RemoteError::WrongType { id, expected, found } => ManagerError::WrongType { id, expected, found },
            RemoteError::IndexOutOfRange { index, len } => ManagerError::IndexOutOfRange { index, len },
            RemoteError::Empty => ManagerError::Empty,
            RemoteError::Full => ManagerError::Full,
            RemoteError::BrokenBarrier => ManagerError::BrokenBarrier,
            RemoteError::Misuse(m) => ManagerError::Misuse(m),
            RemoteError::Panicked(m) => ManagerError::Panicked(m),
            RemoteError::DifferentBuild => ManagerError::DifferentBuild,
            RemoteError::UnknownName(n) => ManagerError::UnknownName(n),
            RemoteError::Codec(m) => {
                ManagerError::Codec(CodecError { op: "decode", type_name: "a value in the manager", message: m })
            }
            RemoteError::PeerGone => ManagerError::BadRequest("the connection was closed".into()),
        }
    }
}
