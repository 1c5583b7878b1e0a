//! File descriptors that travel inside serialized values.
//!
//! While a frame is being encoded, a value that owns a descriptor (a queue's socket, a
//! shared-memory segment, a user's file) calls [`attach`], which duplicates the descriptor
//! into the frame's outgoing list and serializes only its index. The frame is sent with
//! those descriptors as `SCM_RIGHTS`. While the receiver decodes the frame, [`take`]
//! hands each value its descriptor back by index.

use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};

thread_local! {
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Runs `encode` with an outgoing descriptor list open; returns its result and the list.
pub(crate) fn collect_outgoing<R>(encode: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let previous = OUTGOING.with(|o| o.borrow_mut().replace(Vec::new()));
    let r = encode();
    let fds = OUTGOING.with(|o| std::mem::replace(&mut *o.borrow_mut(), previous)).unwrap_or_default();
    (r, fds)
}

/// Runs `decode` with `fds` available to [`take`]; descriptors not taken are closed.
pub(crate) fn with_incoming<R>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> R) -> R {
    if fds.is_empty() {
        // The common case: no scope to set up, but a value that asks for a descriptor
        // must still get an error rather than one from an outer frame.
        let previous = INCOMING.with(|i| i.borrow_mut().replace(Vec::new()));
        let r = decode();
        INCOMING.with(|i| *i.borrow_mut() = previous);
        return r;
    }
    let previous = INCOMING.with(|i| i.borrow_mut().replace(fds.into_iter().map(Some).collect()));
    let r = decode();
    INCOMING.with(|i| *i.borrow_mut() = previous);
    r
}

/// Adds a duplicate of `fd` to the frame being encoded; returns its index in the frame.
///
/// Fails when no frame is being encoded (the value is serialized by some other
/// serializer, e.g. to JSON, where a descriptor cannot go).
pub fn attach(fd: BorrowedFd<'_>) -> Result<u32, String> {
    let dup = fd.try_clone_to_owned().map_err(|e| format!("cannot duplicate descriptor: {e}"))?;
    OUTGOING.with(|o| match o.borrow_mut().as_mut() {
        Some(list) => {
            list.push(dup);
            Ok((list.len() - 1) as u32)
        }
        None => Err("a file descriptor can only be serialized into a multiproc message".to_string()),
    })
}

/// Takes the descriptor at `index` of the frame being decoded.
pub fn take(index: u32) -> Result<OwnedFd, String> {
    INCOMING.with(|i| match i.borrow_mut().as_mut() {
        Some(list) => list
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or_else(|| format!("the message carries no file descriptor #{index}")),
        None => Err("a file descriptor can only be deserialized from a multiproc message".to_string()),
    })
}
