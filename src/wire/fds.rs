//! File descriptors that travel inside serialized values.
//!
//! While a frame is being encoded, a value that owns a descriptor (a queue's socket, a
//! shared-memory segment, a user's file) calls [`attach`], which duplicates the descriptor
//! into the frame's outgoing list and serializes only its index. The frame is sent with
//! those descriptors as `SCM_RIGHTS`. While the receiver decodes the frame, [`take`]
//! hands each value its descriptor back by index.

use std::cell::{Cell, RefCell};
use std::os::fd::{BorrowedFd, OwnedFd};

thread_local! {
    /// Descriptors attached by the values being encoded, for every open scope; an inner
    /// scope's come after its outer scope's.
    static OUTGOING: RefCell<Vec<OwnedFd>> = const { RefCell::new(Vec::new()) };
    /// `OUTGOING`'s length, kept in a plain cell: a scope in which nothing was attached
    /// (nearly every one) never touches the list.
    static OUTGOING_LEN: Cell<usize> = const { Cell::new(0) };
    /// Where the innermost open scope's descriptors start in `OUTGOING`; [`NO_SCOPE`] when
    /// no frame is being encoded. A plain word, not an `Option`: a map opens a scope per
    /// item, and a two-word cell stored in halves and read whole stalled every one.
    static SCOPE: Cell<usize> = const { Cell::new(NO_SCOPE) };
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// `SCOPE` when no scope is open (no list is ever that long).
const NO_SCOPE: usize = usize::MAX;

/// An open outgoing scope: values encoded while it lives attach their descriptors to it,
/// numbered from 0. Dropping it (also when the encoding panicked) reopens the outer
/// scope, if any, and closes the descriptors nobody took.
pub(crate) struct Outgoing {
    /// The enclosing scope's start, or [`NO_SCOPE`].
    outer: usize,
    base: usize,
}

impl Outgoing {
    /// Opens a scope inside the current one, if any.
    #[inline]
    pub(crate) fn open() -> Outgoing {
        let base = OUTGOING_LEN.get();
        Outgoing { outer: SCOPE.replace(base), base }
    }

    /// Whether anything was attached: two reads of a plain cell, no list.
    #[inline]
    pub(crate) fn attached(&self) -> bool {
        OUTGOING_LEN.get() > self.base
    }

    /// The descriptors attached so far; the next ones are numbered from 0 again.
    pub(crate) fn take(&self) -> Vec<OwnedFd> {
        OUTGOING_LEN.set(self.base);
        OUTGOING.with(|o| o.borrow_mut().split_off(self.base))
    }
}

impl Drop for Outgoing {
    #[inline]
    fn drop(&mut self) {
        if self.attached() {
            drop(self.take());
        }
        SCOPE.set(self.outer);
    }
}

/// Runs `encode` with an outgoing descriptor list open; returns its result and the list.
pub(crate) fn collect_outgoing<R>(encode: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let scope = Outgoing::open();
    let r = encode();
    let fds = if scope.attached() { scope.take() } else { Vec::new() };
    (r, fds)
}

/// Runs `decode` with `fds` available to [`take`]; descriptors not taken are closed.
pub(crate) fn with_incoming<R>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> R) -> R {
    // With no descriptors (the common case) the scope is still opened, empty: a value that
    // asks for a descriptor must get an error rather than one from an outer frame.
    let list = if fds.is_empty() { Vec::new() } else { fds.into_iter().map(Some).collect() };
    let _scope = Incoming::open(list);
    decode()
}

/// An open incoming scope. Dropping it (also when a `Deserialize` panicked) closes the
/// descriptors nobody took and reopens the outer scope, if any: a panic must leave
/// neither descriptors nor a stale scope a later [`take`] would hand out.
struct Incoming {
    outer: Option<Vec<Option<OwnedFd>>>,
}

impl Incoming {
    fn open(fds: Vec<Option<OwnedFd>>) -> Incoming {
        Incoming { outer: INCOMING.with(|i| i.borrow_mut().replace(fds)) }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        let left = INCOMING.with(|i| std::mem::replace(&mut *i.borrow_mut(), self.outer.take()));
        drop(left);
    }
}

/// Adds a duplicate of `fd` to the frame being encoded; returns its index in the frame.
///
/// Fails when no frame is being encoded (the value is serialized by some other
/// serializer, e.g. to JSON, where a descriptor cannot go).
pub fn attach(fd: BorrowedFd<'_>) -> Result<u32, String> {
    let base = SCOPE.get();
    if base == NO_SCOPE {
        return Err("a file descriptor can only be serialized into a multiproc message".to_string());
    }
    let dup = fd.try_clone_to_owned().map_err(|e| format!("cannot duplicate descriptor: {e}"))?;
    OUTGOING.with(|o| o.borrow_mut().push(dup));
    let len = OUTGOING_LEN.get() + 1;
    OUTGOING_LEN.set(len);
    Ok((len - 1 - base) as u32)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn devnull() -> std::fs::File {
        std::fs::File::open("/dev/null").unwrap()
    }

    #[test]
    fn attach_outside_a_scope_is_an_error() {
        let f = devnull();
        assert!(attach(f.as_fd()).unwrap_err().contains("multiproc message"));
    }

    #[test]
    fn nested_scopes_number_and_keep_their_own_descriptors() {
        let f = devnull();
        let ((first, (inner, inner_fds), second), outer_fds) = collect_outgoing(|| {
            let first = attach(f.as_fd()).unwrap();
            let inner = collect_outgoing(|| (attach(f.as_fd()).unwrap(), attach(f.as_fd()).unwrap()));
            let second = attach(f.as_fd()).unwrap();
            (first, inner, second)
        });
        assert_eq!((first, second), (0, 1));
        assert_eq!(inner, (0, 1));
        assert_eq!((outer_fds.len(), inner_fds.len()), (2, 2));
        // Closed again, with nothing left behind.
        assert!(attach(f.as_fd()).is_err());
        let (_, none) = collect_outgoing(|| ());
        assert!(none.is_empty());
    }

    #[test]
    fn a_panicking_encoder_closes_its_scope() {
        let f = devnull();
        let r = std::panic::catch_unwind(|| {
            collect_outgoing(|| {
                attach(f.as_fd()).unwrap();
                panic!("in the middle of encoding");
            })
        });
        assert!(r.is_err());
        assert!(attach(f.as_fd()).is_err());
        let (_, fds) = collect_outgoing(|| attach(f.as_fd()).unwrap());
        assert_eq!(fds.len(), 1);
    }

    #[test]
    fn a_panicking_decoder_closes_the_descriptors_it_left_and_its_scope() {
        let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::NONBLOCK).unwrap();
        let r = std::panic::catch_unwind(|| {
            with_incoming(vec![write_end], || -> () { panic!("in the middle of decoding") })
        });
        assert!(r.is_err());
        // No scope is left open: a descriptor asked for now is refused, not handed one.
        assert!(take(0).unwrap_err().contains("only be deserialized from a multiproc message"));
        // The write end nobody took is closed: the pipe reads as ended.
        assert_eq!(rustix::io::read(&read_end, &mut [0u8; 1]).unwrap(), 0);
    }
}
