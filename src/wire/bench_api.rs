//! Entry points into the wire layer for the criterion benchmarks (`benches/`), which
//! reach them as `multiproc::bench_api`.
//!
//! Compiled only with the `bench-internals` feature, which the benchmarks turn on; it is
//! not part of the crate's API and may change with the wire layer.

use std::io;
use std::os::unix::net::UnixStream;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::frame::Channel;
use super::{CodecError, DEFAULT_MAX_FRAME, FrameError, codec};

/// Appends the encoding of `value` to `buf`, as every frame payload is encoded.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    codec::encode_into(value, buf)
}

/// Decodes a whole `T` from `bytes`, as every frame payload is decoded.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    codec::decode(bytes)
}

/// One end of a framed socketpair: the writer and reader every channel is made of.
#[derive(Debug)]
pub struct FramedEnd(Channel);

impl FramedEnd {
    /// Two connected ends.
    pub fn pair() -> io::Result<(FramedEnd, FramedEnd)> {
        let (a, b) = UnixStream::pair()?;
        Ok((FramedEnd(Channel::new(a, DEFAULT_MAX_FRAME)), FramedEnd(Channel::new(b, DEFAULT_MAX_FRAME))))
    }

    /// Queues one frame holding `value`; nothing is sent until [`flush`](FramedEnd::flush).
    pub fn queue<T: Serialize + ?Sized>(&mut self, kind: u8, value: &T) -> Result<(), FrameError> {
        self.0.writer.queue(kind, value)
    }

    /// Sends every queued frame, blocking until the socket took them.
    pub fn flush(&mut self) -> Result<(), FrameError> {
        self.0.writer.flush(None)
    }

    /// Receives the next frame (blocking) and decodes its payload as a `T`.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<(u8, T), FrameError> {
        let frame = self.0.reader.recv(None)?;
        let kind = frame.kind;
        let value = frame.decode::<T>().map_err(|e| FrameError::Malformed(e.to_string()))?;
        Ok((kind, value))
    }
}
