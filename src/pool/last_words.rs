//! A worker's last words: why it is about to end, written into the counter page it shares
//! with its driver, so the driver can name the cause of a death nobody could report over
//! the socket.
//!
//! Two kinds of ending need it. A panic under `panic = "abort"` (or a panic while
//! panicking) kills the process right after the panic hook ran: the hook leaves the
//! message and location here, and the driver settles the task as `Panicked` instead of a
//! bare `SIGABRT`. And a worker that can no longer talk to its driver (a task closed or
//! shut down its socket) leaves the reason here before it exits.
//!
//! Layout (after the engine's own counters, in slots [`SLOT_WORDS_LEN`] and up): one slot
//! holds the length of the encoded [`LastWords`], then up to [`WORDS_BYTES`] bytes packed
//! eight to a slot. The writer stores the bytes first and the length last (release); the
//! reader loads the length (acquire) first, so it never reads a half-written message.
//! Only the worker writes.
//!
//! The panic hook (`trampoline`) speaks through [`say`] wherever a task runs; only a
//! worker that [`install`]ed a page is heard.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::item::PanicReport;
use crate::sys::mem::SharedCounters;
use crate::wire::codec;

/// The counter-page slot holding the length of the last words (slots below it are the
/// engine's counters).
pub(crate) const SLOT_WORDS_LEN: usize = 2;
/// The first slot of the last words' bytes.
pub(crate) const SLOT_WORDS: usize = SLOT_WORDS_LEN + 1;
/// Room for a worker's last words, in bytes.
pub(crate) const WORDS_BYTES: usize = 3 * 1024;
/// Slots a page with last words needs in all.
pub(crate) const SLOTS_WITH_WORDS: usize = SLOT_WORDS + WORDS_BYTES / 8;

/// Why a worker is about to end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum LastWords {
    /// A panic the process will not survive (`panic = "abort"`, or a panic while panicking).
    Panic(PanicReport),
    /// The worker ends by itself, for this reason (for example its connection is gone).
    Cause(String),
}

impl LastWords {
    /// Makes the words shorter (the backtrace goes first, then half the text); `false`
    /// when there is nothing left to cut.
    fn shorten(&mut self) -> bool {
        let halve = |s: &mut String| {
            if s.len() < 16 {
                return false;
            }
            let mut at = s.len() / 2;
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            s.truncate(at);
            s.push('…');
            true
        };
        match self {
            LastWords::Panic(p) if p.backtrace.is_some() => {
                p.backtrace = None;
                true
            }
            LastWords::Panic(p) => halve(&mut p.message) || halve(&mut p.location),
            LastWords::Cause(c) => halve(c),
        }
    }
}

/// This worker's counter page, once its driver sent it (a process is at most one
/// worker, so one page).
static PAGE: OnceLock<Arc<SharedCounters>> = OnceLock::new();

/// Makes `page` the place [`say`] writes to (the worker, once, at setup).
pub(crate) fn install(page: Arc<SharedCounters>) {
    let _ = PAGE.set(page);
}

/// Leaves `words` for the driver, replacing anything said before. A message too long for
/// the page is shortened (the backtrace first, then the text).
pub(crate) fn say(words: &LastWords) {
    let Some(page) = PAGE.get() else { return };
    let bytes = encode_fitting(words);
    for (i, word) in pack(&bytes).into_iter().enumerate() {
        page.get(SLOT_WORDS + i).store(word, Ordering::Relaxed);
    }
    page.get(SLOT_WORDS_LEN).store(bytes.len() as u64, Ordering::Release);
}

/// `LastWords::Cause(cause)` encoded to fit the page, for [`say_prepared`].
#[cfg(feature = "sandbox")]
pub(crate) fn prepare_cause(cause: &str) -> Vec<u8> {
    encode_fitting(&LastWords::Cause(cause.to_string()))
}

/// Leaves words that [`prepare_cause`] encoded, without allocating: safe in a signal
/// handler (the sandbox's SIGSYS handler says why the worker dies with it).
#[cfg(feature = "sandbox")]
pub(crate) fn say_prepared(bytes: &[u8]) {
    let Some(page) = PAGE.get() else { return };
    if bytes.len() > WORDS_BYTES {
        return;
    }
    for (i, c) in bytes.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        page.get(SLOT_WORDS + i).store(u64::from_le_bytes(w), Ordering::Relaxed);
    }
    page.get(SLOT_WORDS_LEN).store(bytes.len() as u64, Ordering::Release);
}

/// Takes back what was said (a panic that was caught after all).
pub(crate) fn unsay() {
    if let Some(page) = PAGE.get() {
        let len = page.get(SLOT_WORDS_LEN);
        if len.load(Ordering::Relaxed) != 0 {
            len.store(0, Ordering::Release);
        }
    }
}

/// What the worker behind `page` said last, if anything (the driver, after its death).
pub(crate) fn read(page: &SharedCounters) -> Option<LastWords> {
    let len = page.get(SLOT_WORDS_LEN).load(Ordering::Acquire) as usize;
    if len == 0 || len > WORDS_BYTES {
        return None;
    }
    let words: Vec<u64> = (0..len.div_ceil(8)).map(|i| page.get(SLOT_WORDS + i).load(Ordering::Relaxed)).collect();
    codec::decode(&unpack(&words, len)).ok()
}

/// `words` encoded in at most [`WORDS_BYTES`] bytes.
fn encode_fitting(words: &LastWords) -> Vec<u8> {
    let mut words = words.clone();
    loop {
        match codec::encode(&words) {
            Ok(b) if b.len() <= WORDS_BYTES => return b,
            _ if words.shorten() => continue,
            _ => return codec::encode(&LastWords::Cause("(last words too long)".into())).unwrap_or_default(),
        }
    }
}

/// Bytes packed eight to a little-endian word, the last one padded with zeros.
fn pack(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect()
}

/// The first `len` bytes of words made by [`pack`].
fn unpack(words: &[u64], len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    bytes.truncate(len);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_every_length() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            assert_eq!(unpack(&pack(&bytes), len), bytes);
        }
    }

    #[test]
    fn a_long_panic_loses_its_backtrace_then_its_tail_but_still_fits() {
        let words = LastWords::Panic(PanicReport {
            message: "m".repeat(10 * WORDS_BYTES),
            location: "src/lib.rs:1:1".into(),
            backtrace: Some("b".repeat(WORDS_BYTES)),
        });
        let bytes = encode_fitting(&words);
        assert!(bytes.len() <= WORDS_BYTES);
        match codec::decode::<LastWords>(&bytes).unwrap() {
            LastWords::Panic(p) => {
                assert!(p.backtrace.is_none());
                assert!(p.message.starts_with("mmm"));
                assert_eq!(p.location, "src/lib.rs:1:1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_driver_reads_what_the_worker_said_and_nothing_once_unsaid() {
        let page = Arc::new(SharedCounters::create(SLOTS_WITH_WORDS).unwrap());
        assert!(read(&page).is_none());
        install(page.clone());
        say(&LastWords::Cause("the socket was closed".into()));
        assert_eq!(read(&page), Some(LastWords::Cause("the socket was closed".into())));
        unsay();
        assert!(read(&page).is_none());
    }
}
