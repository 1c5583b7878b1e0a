//! The wire layer: frames and the codec.
//!
//! A frame is an 8-byte header — payload length (`u32`, little-endian), a kind byte, the
//! number of file descriptors that travel with it, two reserved zero bytes — followed by
//! the payload. Payloads are serde values in postcard's format. Every malformed, cut or
//! oversized frame is a [`FrameError`], never a panic, a hang or undefined behaviour.

#[cfg(feature = "bench-internals")]
pub(crate) mod bench_api;
pub(crate) mod codec;
mod error;
pub(crate) mod fds;
pub(crate) mod frame;
pub(crate) mod handshake;
pub(crate) mod kinds;

pub use error::{CodecError, FrameError};

/// The default largest frame accepted or sent: 2 GiB.
pub const DEFAULT_MAX_FRAME: u32 = 1 << 31;
