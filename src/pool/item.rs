//! One item as it travels: a `u32` little-endian length, then its bytes. In a task an
//! item is an encoded argument; in a result it is a tag byte and then the value
//! ([`TAG_OK`]), the panic ([`TAG_PANIC`], a [`PanicReport`]) or the codec error
//! ([`TAG_CODEC`], a `String`). Both engines use this format: the local workers, and
//! the batches a cluster runs (`dispatch`).
//!
//! This file is the one place that decodes a result item ([`item_outcome`],
//! [`Outcome::decode`]).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::TaskError;
use crate::wire::codec;

/// Item outcome tags in a result.
pub(crate) const TAG_OK: u8 = 0;
pub(crate) const TAG_PANIC: u8 = 1;
pub(crate) const TAG_CODEC: u8 = 2;

/// A panic, as a worker reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PanicReport {
    pub(crate) message: String,
    pub(crate) location: String,
    pub(crate) backtrace: Option<String>,
}

/// How one item ended, as an engine hands it to a sink.
pub(crate) enum Outcome<'a> {
    /// The encoded value (decoded by the sink, which knows its type).
    Value(&'a [u8]),
    Failed(TaskError),
}

/// What a delivery turned out to be, for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// A value, decoded.
    Value,
    /// An error.
    Failed,
    /// The value did not decode (counted as a codec failure).
    CodecFailed,
    /// A callback panicked (reported; the value stands).
    CallbackPanicked,
    /// Nobody wanted it any more (cancelled before it arrived).
    Ignored,
}

impl Outcome<'_> {
    /// Whether the task panicked (for the statistics).
    pub(crate) fn is_panic(&self) -> bool {
        matches!(self, Outcome::Failed(TaskError::Panicked { .. }))
    }

    /// The caller's value (or what went wrong), and what the delivery counts as.
    #[inline]
    pub(crate) fn decode<R: DeserializeOwned>(self, task: &'static str) -> (Result<R, TaskError>, Delivered) {
        match self {
            // Guarded: a panic in `R`'s `Deserialize` is this item's codec error.
            Outcome::Value(bytes) => match super::guard::decode_value::<R>(task, bytes) {
                Ok(v) => (Ok(v), Delivered::Value),
                Err(e) => (Err(e), Delivered::CodecFailed),
            },
            Outcome::Failed(e) => (Err(e), Delivered::Failed),
        }
    }
}

/// One item of a result: its tag byte, then the value or what went wrong.
#[inline]
pub(crate) fn item_outcome<'a>(task: &'static str, item: &'a [u8]) -> Outcome<'a> {
    let (tag, data) = (item.first().copied(), item.get(1..).unwrap_or(&[]));
    match tag {
        Some(TAG_OK) => Outcome::Value(data),
        Some(TAG_PANIC) => match codec::decode::<PanicReport>(data) {
            Ok(p) => Outcome::Failed(TaskError::Panicked {
                task,
                message: p.message,
                location: p.location,
                backtrace: p.backtrace,
            }),
            Err(e) => Outcome::Failed(TaskError::Codec { task, message: e.to_string() }),
        },
        _ => Outcome::Failed(TaskError::Codec {
            task,
            message: codec::decode::<String>(data).unwrap_or_else(|e| e.to_string()),
        }),
    }
}

/// One result item decoded into the caller's type, as a map's collector stores it.
pub(crate) enum Decoded<R> {
    Value(R),
    /// The task failed (`panicked`: by a panic) or its value did not decode (`delivered`
    /// says which, for the statistics).
    Failed {
        error: TaskError,
        delivered: Delivered,
        panicked: bool,
    },
}

/// Decodes one result item straight into `R` (a value's bytes are decoded in place).
#[inline]
pub(crate) fn decode_item<R: DeserializeOwned>(task: &'static str, item: &[u8]) -> Decoded<R> {
    let outcome = item_outcome(task, item);
    let panicked = outcome.is_panic();
    match outcome.decode::<R>(task) {
        (Ok(v), _) => Decoded::Value(v),
        (Err(error), delivered) => Decoded::Failed { error, delivered, panicked },
    }
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap()))
}

#[inline]
pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap()))
}

/// Splits length-prefixed items: yields up to `count` items; `taken` says how many
/// were well formed once it stops.
pub(crate) struct Items<'a> {
    body: &'a [u8],
    left: u32,
    pub(crate) taken: u32,
}

impl<'a> Items<'a> {
    pub(crate) fn new(body: &'a [u8], count: u32) -> Self {
        Items { body, left: count, taken: 0 }
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let len = u32_at(self.body, 0)? as usize;
        let item = self.body.get(4..4 + len)?;
        self.body = &self.body[4 + len..];
        self.left -= 1;
        self.taken += 1;
        Some(item)
    }
}

/// Splits length-prefixed items: calls `each(index, bytes)` for up to `count` items.
/// Returns how many were well formed.
pub(crate) fn for_each_item(body: &[u8], count: u32, mut each: impl FnMut(u32, &[u8])) -> u32 {
    let mut items = Items::new(body, count);
    for (i, item) in (&mut items).enumerate() {
        each(i as u32, item);
    }
    items.taken
}

/// Appends a length prefix placeholder; returns where to patch it.
pub(crate) fn begin_item(buf: &mut Vec<u8>) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    at
}

/// Patches the length prefix written by [`begin_item`].
pub(crate) fn end_item(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at - 4) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_a_cut_list_stops_early() {
        let mut buf = Vec::new();
        for word in ["a", "bcd", ""] {
            let at = begin_item(&mut buf);
            buf.extend_from_slice(word.as_bytes());
            end_item(&mut buf, at);
        }
        let mut seen = Vec::new();
        assert_eq!(for_each_item(&buf, 3, |i, b| seen.push((i, b.to_vec()))), 3);
        assert_eq!(seen[1], (1, b"bcd".to_vec()));
        assert_eq!(for_each_item(&buf[..buf.len() - 3], 3, |_, _| {}), 2);
    }

    #[test]
    fn a_result_item_decodes_by_its_tag() {
        let mut ok = vec![TAG_OK];
        codec::encode_into(&7u32, &mut ok).unwrap();
        assert!(matches!(decode_item::<u32>("t", &ok), Decoded::Value(7)));
        let mut panic = vec![TAG_PANIC];
        let report = PanicReport { message: "boom".into(), location: "here".into(), backtrace: None };
        codec::encode_into(&report, &mut panic).unwrap();
        assert!(matches!(
            decode_item::<u32>("t", &panic),
            Decoded::Failed { panicked: true, delivered: Delivered::Failed, .. }
        ));
        assert!(matches!(
            decode_item::<String>("t", &[TAG_OK, 0xff]),
            Decoded::Failed { panicked: false, delivered: Delivered::CodecFailed, .. }
        ));
        assert!(matches!(item_outcome("t", &[]), Outcome::Failed(TaskError::Codec { .. })));
    }
}
