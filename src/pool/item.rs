//! One item as it travels: a `u32` little-endian length, then its bytes. In a task an
//! item is an encoded argument; in a result it is a tag byte and then the value
//! ([`TAG_OK`]), the panic ([`TAG_PANIC`], a [`PanicReport`]) or the codec error
//! ([`TAG_CODEC`], a `String`). Both engines use this format: the local workers, and
//! the batches a cluster runs (`dispatch`).
//!
//! This file is the one place that decodes a result item ([`item_outcome`],
//! [`Outcome::decode`]).

use std::panic::{AssertUnwindSafe, catch_unwind};

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
    match item.split_first() {
        Some((&TAG_OK, data)) => Outcome::Value(data),
        _ => Outcome::Failed(item_failure(task, item)),
    }
}

/// What went wrong with a result item that is not a value (any tag but [`TAG_OK`]).
fn item_failure(task: &'static str, item: &[u8]) -> TaskError {
    let (tag, data) = (item.first().copied(), item.get(1..).unwrap_or(&[]));
    match tag {
        Some(TAG_PANIC) => match codec::decode::<PanicReport>(data) {
            Ok(p) => TaskError::Panicked { task, message: p.message, location: p.location, backtrace: p.backtrace },
            Err(e) => TaskError::Codec { task, message: e.to_string() },
        },
        _ => TaskError::Codec { task, message: codec::decode::<String>(data).unwrap_or_else(|e| e.to_string()) },
    }
}

/// A result item that is not a value, as [`decode_values`] finds it.
pub(crate) struct NotAValue {
    /// Its position among the items the iterator yielded.
    pub(crate) at: usize,
    pub(crate) error: TaskError,
    /// What the delivery counts as.
    pub(crate) delivered: Delivered,
    /// Whether the task panicked.
    pub(crate) panicked: bool,
}

/// Decodes the result items of `items` into `values` until one is not a value (returned;
/// the caller goes on after it) or the items end (`None`). One guard covers the whole
/// run, not one per item (a map decodes a small value per item, and the guard kept each
/// decode out of line): a panic in `R`'s `Deserialize` is the codec error of the item it
/// happened in, exactly as [`Outcome::decode`] makes it.
pub(crate) fn decode_values<R: DeserializeOwned>(
    task: &'static str,
    items: &mut Items<'_>,
    values: &mut Vec<R>,
) -> Option<NotAValue> {
    let pass = catch_unwind(AssertUnwindSafe(|| {
        for item in items.by_ref() {
            let Some((&TAG_OK, data)) = item.split_first() else {
                return Some((item_failure(task, item), Delivered::Failed));
            };
            match codec::decode::<R>(data) {
                Ok(v) => values.push(v),
                Err(e) => return Some((TaskError::Codec { task, message: e.to_string() }, Delivered::CodecFailed)),
            }
        }
        None
    }));
    // The item that stopped the run is the last one taken.
    let at = (items.taken as usize).saturating_sub(1);
    let (error, delivered) = match pass {
        Ok(None) => return None,
        Ok(Some(failed)) => failed,
        Err(payload) => (super::guard::decode_panicked(task, payload.as_ref()), Delivered::CodecFailed),
    };
    let panicked = matches!(error, TaskError::Panicked { .. });
    Some(NotAValue { at, error, delivered, panicked })
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

    /// A `u32` whose `Deserialize` panics on 13.
    #[derive(Debug, PartialEq)]
    struct Unlucky(u32);

    impl<'de> Deserialize<'de> for Unlucky {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let v = u32::deserialize(d)?;
            assert!(v != 13, "unlucky {v}");
            Ok(Unlucky(v))
        }
    }

    fn chunk(items: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (tag, data) in items {
            let at = begin_item(&mut buf);
            buf.push(*tag);
            buf.extend_from_slice(data);
            end_item(&mut buf, at);
        }
        buf
    }

    #[test]
    fn a_run_of_values_stops_at_each_item_that_is_not_one_and_goes_on_after_it() {
        let ok = |v: u32| (TAG_OK, codec::encode(&v).unwrap());
        let report = PanicReport { message: "boom".into(), location: "here".into(), backtrace: None };
        let body = chunk(&[
            ok(1),
            (TAG_PANIC, codec::encode(&report).unwrap()),
            ok(13),
            (TAG_OK, vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            ok(2),
            (TAG_CODEC, codec::encode("too big").unwrap()),
        ]);
        let mut items = Items::new(&body, 6);
        let mut values = Vec::new();
        let mut stops = Vec::new();
        while let Some(not) = decode_values::<Unlucky>("t", &mut items, &mut values) {
            stops.push((not.at, not.delivered, not.panicked, not.error.to_string()));
        }
        assert_eq!(values, vec![Unlucky(1), Unlucky(2)]);
        let at: Vec<_> = stops.iter().map(|s| (s.0, s.1, s.2)).collect();
        assert_eq!(
            at,
            vec![
                (1, Delivered::Failed, true),
                (2, Delivered::CodecFailed, false),
                (3, Delivered::CodecFailed, false),
                (5, Delivered::Failed, false),
            ]
        );
        assert!(stops[0].3.contains("boom"), "{}", stops[0].3);
        assert!(stops[1].3.contains("decoding the result panicked in the parent: unlucky 13"), "{}", stops[1].3);
        assert!(stops[3].3.contains("too big"), "{}", stops[3].3);
        assert_eq!(items.taken, 6);
    }
}
