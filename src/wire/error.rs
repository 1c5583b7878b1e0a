use std::io;

/// A frame that could not be read or written.
///
/// ```
/// use multiproc::{FrameError, PipeError};
///
/// /// A short explanation of a broken pipe message.
/// fn explain(e: &PipeError) -> String {
///     match e {
///         PipeError::Frame(FrameError::Oversized { len, max }) => format!("{len} bytes, at most {max}"),
///         PipeError::Frame(FrameError::Truncated { .. }) => "cut short".to_string(),
///         other => other.to_string(),
///     }
/// }
///
/// let e = PipeError::Frame(FrameError::Oversized { len: 3 << 30, max: multiproc::DEFAULT_MAX_FRAME });
/// assert_eq!(explain(&e), "3221225472 bytes, at most 2147483648");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer closed the connection at a frame boundary.
    #[error("the peer closed the connection")]
    Closed,
    /// The connection ended in the middle of a frame.
    #[error("frame cut short: expected {expected} bytes, the connection ended after {got}")]
    Truncated {
        /// Bytes the frame needed (header included).
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// A frame larger than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum frame size of {max} bytes")]
    Oversized {
        /// The frame's payload length.
        len: u64,
        /// The maximum in force.
        max: u32,
    },
    /// A header or payload that is not what the protocol allows.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A value to send could not be encoded; nothing was sent.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// No complete frame arrived before the deadline.
    #[error("no frame arrived before the deadline")]
    TimedOut,
    /// The operating system refused the I/O.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// A value that could not be turned into bytes, or bytes that are not a value of the type.
///
/// ```
/// use multiproc::{Queue, QueueError};
///
/// /// A value whose serialization always fails.
/// #[derive(Debug, serde::Deserialize)]
/// struct Unsendable;
///
/// impl serde::Serialize for Unsendable {
///     fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
///         Err(serde::ser::Error::custom("not today"))
///     }
/// }
///
/// multiproc::init();
/// let q = Queue::new()?;
/// match q.put(Unsendable) {
///     Err(QueueError::Encode(e)) => {
///         assert_eq!(e.op, "encode");
///         assert!(e.type_name.ends_with("Unsendable"), "{e}"); // names the type
///     }
///     other => panic!("expected an encoding error, got {other:?}"),
/// }
/// # Ok::<(), QueueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {op} `{type_name}`: {message}")]
pub struct CodecError {
    /// "encode" or "decode".
    pub op: &'static str,
    /// The Rust type involved.
    pub type_name: &'static str,
    /// What the codec said.
    pub message: String,
}
