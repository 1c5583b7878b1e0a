//! Length-prefixed frames over a Unix stream socket, with descriptors alongside.
//!
//! A [`FrameWriter`] batches frames into one buffer and sends them with as few syscalls
//! as the socket allows; a [`FrameReader`] reads as much as is available into one buffer
//! and hands out frames that borrow from it. Neither allocates per frame once warm.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CodecError, FrameError, codec, fds};
use crate::sys;

/// Size of the frame header.
pub(crate) const HEADER_LEN: usize = 8;

/// How long a side waiting for the answer to what it just sent polls for it before
/// sleeping ([`FrameReader::spin_fill`]): a pipe's `recv`, a caller's express `apply`, a
/// pool worker waiting for its next task, a manager client waiting for its reply.
pub(crate) const REPLY_SPIN: Duration = Duration::from_micros(30);

/// Reads of this size are attempted when the buffer has room, so small frames batch.
const READ_CHUNK: usize = 64 * 1024;

/// A reader's first buffer, before any read has filled it: a connection that only ever
/// carries small frames (a worker's that runs one task and ends, a handshake) zeroes,
/// and touches, one page instead of sixteen; one that fills it grows to [`READ_CHUNK`].
const FIRST_CHUNK: usize = 4 * 1024;

/// Frames up to this size get their whole buffer at once; a larger announced length
/// grows the buffer by doubling as bytes arrive, so a lying header cannot make the
/// reader allocate gigabytes before any data has come.
const EAGER_LIMIT: usize = 64 * 1024 * 1024;

/// An idle read buffer larger than this is freed, so one huge frame does not pin memory.
const KEEP_LIMIT: usize = 4 * 1024 * 1024;

/// One received frame; its payload borrows the reader's buffer.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub(crate) kind: u8,
    pub(crate) payload: &'a [u8],
    pub(crate) fds: Vec<OwnedFd>,
}

/// A spill buffer is kept for reuse only up to this size ...
const POOL_BUF_MAX: usize = 16 << 20;
/// ... and a writer keeps at most this much in them (free and in flight).
const POOL_TOTAL_MAX: usize = 48 << 20;
/// Pooled spill buffers are sized in steps of this, so bodies of similar sizes share them.
const POOL_STEP: usize = 1 << 20;

/// The payload of a frame sent by [`FrameWriter::queue_spilling`] or
/// [`FrameWriter::queue_parts_spilling`] as a memfd: its last descriptor, mapped. The
/// frame's own payload is empty (the body is the whole memfd) or the body's length as a
/// `u64` (the body is the start of a reused memfd). The other descriptors stay in `fds`.
pub(crate) fn spilled(payload: &[u8], fds: &mut Vec<OwnedFd>) -> Result<sys::mem::Mapped, FrameError> {
    let len = match payload.len() {
        0 => None,
        8 => Some(u64::from_le_bytes(payload.try_into().expect("8 bytes")) as usize),
        n => return Err(FrameError::Malformed(format!("a spilled frame with {n} bytes of its own"))),
    };
    let fd = fds.pop().ok_or_else(|| FrameError::Malformed("a spilled frame without its memfd".into()))?;
    sys::mem::Mapped::open(&fd, len).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => FrameError::Malformed(e.to_string()),
        _ => e.into(),
    })
}

/// Mappings of the reused memfds a peer's writer spills into, kept so that a body in one
/// of them costs no `mmap`: the peer refills a memfd only after hearing that its last body
/// was read, and a shared mapping shows the new bytes.
#[derive(Debug, Default)]
pub(crate) struct SpillMaps {
    maps: VecDeque<((u64, u64, u64), Arc<sys::mem::Mapped>)>,
}

/// A reader keeps at most this many mappings of reused memfds.
const KEEP_MAPS: usize = 8;

impl SpillMaps {
    /// The body of a spilled frame (see [`spilled`]): its mapping and its length. A body in
    /// a reused memfd comes from a mapping kept for it.
    pub(crate) fn open(
        &mut self,
        payload: &[u8],
        fds: &mut Vec<OwnedFd>,
    ) -> Result<(Arc<sys::mem::Mapped>, usize), FrameError> {
        if payload.len() != 8 {
            let m = spilled(payload, fds)?;
            let len = m.bytes().len();
            return Ok((Arc::new(m), len));
        }
        let len = u64::from_le_bytes(payload.try_into().expect("8 bytes"));
        let fd = fds.pop().ok_or_else(|| FrameError::Malformed("a spilled frame without its memfd".into()))?;
        let id = sys::mem::Mapped::identity(&fd)?;
        if len > id.2 {
            return Err(FrameError::Malformed(format!("a body of {len} bytes announced in a memfd of {}", id.2)));
        }
        if let Some((_, m)) = self.maps.iter().find(|(k, _)| *k == id) {
            return Ok((m.clone(), len as usize));
        }
        let m = Arc::new(sys::mem::Mapped::open(&fd, None)?);
        let kept = |maps: &VecDeque<((u64, u64, u64), _)>| maps.iter().map(|((_, _, size), _)| *size).sum::<u64>();
        while self.maps.len() >= KEEP_MAPS || (!self.maps.is_empty() && kept(&self.maps) + id.2 > POOL_TOTAL_MAX as u64)
        {
            self.maps.pop_front();
        }
        self.maps.push_back((id, m.clone()));
        Ok((m, len as usize))
    }

    /// Drops the kept mapping `m` (its memfd will not come again).
    pub(crate) fn forget(&mut self, m: &Arc<sys::mem::Mapped>) {
        self.maps.retain(|(_, k)| !Arc::ptr_eq(k, m));
    }
}

/// The spill buffers a writer reuses: free ones, and those sent under a token and not yet
/// released (the reader may still be reading them).
#[derive(Debug, Default)]
struct SpillPool {
    free: Vec<sys::mem::SpillBuf>,
    in_flight: VecDeque<(u64, sys::mem::SpillBuf)>,
}

impl SpillPool {
    fn total(&self) -> usize {
        self.free.iter().map(|b| b.capacity()).sum::<usize>()
            + self.in_flight.iter().map(|(_, b)| b.capacity()).sum::<usize>()
    }

    /// A buffer of at least `len` bytes, from the pool or new; `None` when the pool
    /// would grow past its bounds (the caller sends a one-off memfd instead).
    fn take(&mut self, len: usize) -> Option<io::Result<sys::mem::SpillBuf>> {
        let best =
            (0..self.free.len()).filter(|&i| self.free[i].capacity() >= len).min_by_key(|&i| self.free[i].capacity());
        if let Some(i) = best {
            return Some(Ok(self.free.swap_remove(i)));
        }
        let cap = len.div_ceil(POOL_STEP).max(1) * POOL_STEP;
        if cap > POOL_BUF_MAX {
            return None;
        }
        // Make room by dropping free buffers too small for this body.
        while self.total() + cap > POOL_TOTAL_MAX {
            self.free.pop()?;
        }
        Some(sys::mem::SpillBuf::create(cap))
    }
}

impl Frame<'_> {
    /// Decodes the payload as a `T`, giving it this frame's descriptors.
    pub(crate) fn decode<T: DeserializeOwned>(self) -> Result<T, CodecError> {
        let payload = self.payload;
        fds::with_incoming(self.fds, || codec::decode(payload))
    }
}

fn header(len: usize, kind: u8, nfds: usize) -> [u8; HEADER_LEN] {
    let l = (len as u32).to_le_bytes();
    [l[0], l[1], l[2], l[3], kind, nfds as u8, 0, 0]
}

fn remaining(deadline: Option<Instant>) -> Result<Option<std::time::Duration>, FrameError> {
    match deadline {
        None => Ok(None),
        Some(d) => {
            let now = Instant::now();
            if now >= d { Err(FrameError::TimedOut) } else { Ok(Some(d - now)) }
        }
    }
}

/// The sending half: frames are queued in one buffer and flushed together.
#[derive(Debug)]
pub(crate) struct FrameWriter {
    sock: Arc<OwnedFd>,
    buf: Vec<u8>,
    /// How much of `buf` is already sent (a partial flush).
    sent: usize,
    fds: Vec<OwnedFd>,
    max_frame: u32,
    spill: SpillPool,
}

impl FrameWriter {
    /// Queues a frame whose payload is `value` encoded. On error nothing is queued.
    pub(crate) fn queue<T: Serialize + ?Sized>(&mut self, kind: u8, value: &T) -> Result<(), FrameError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER_LEN]);
        let (r, new_fds) = fds::collect_outgoing(|| codec::encode_into(value, &mut self.buf));
        if let Err(e) = r {
            self.buf.truncate(start);
            return Err(FrameError::Codec(e));
        }
        self.seal(start, kind, new_fds)
    }

    /// Queues a frame built by `write`, which appends the payload to the given buffer.
    pub(crate) fn queue_with(
        &mut self,
        kind: u8,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
    ) -> Result<(), FrameError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER_LEN]);
        let (r, new_fds) = fds::collect_outgoing(|| write(&mut self.buf));
        if let Err(e) = r {
            self.buf.truncate(start);
            return Err(FrameError::Codec(e));
        }
        self.seal(start, kind, new_fds)
    }

    /// Queues a frame with `payload` as its bytes.
    pub(crate) fn queue_bytes(&mut self, kind: u8, payload: &[u8]) -> Result<(), FrameError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER_LEN]);
        self.buf.extend_from_slice(payload);
        self.seal(start, kind, Vec::new())
    }

    fn seal(&mut self, start: usize, kind: u8, new_fds: Vec<OwnedFd>) -> Result<(), FrameError> {
        let len = self.buf.len() - start - HEADER_LEN;
        if len as u64 > self.max_frame as u64 {
            self.buf.truncate(start);
            return Err(FrameError::Oversized { len: len as u64, max: self.max_frame });
        }
        if new_fds.len() > sys::sock::MAX_FDS_PER_MESSAGE {
            self.buf.truncate(start);
            return Err(FrameError::Malformed(format!(
                "{} file descriptors in one message; at most {} fit",
                new_fds.len(),
                sys::sock::MAX_FDS_PER_MESSAGE
            )));
        }
        self.buf[start..start + HEADER_LEN].copy_from_slice(&header(len, kind, new_fds.len()));
        self.fds.extend(new_fds);
        Ok(())
    }

    /// The largest frame this writer sends.
    pub(crate) fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// Another writer on the same socket, with nothing queued. The two must never flush
    /// at once (their owner orders them), or their frames would interleave.
    pub(crate) fn sibling(&self) -> FrameWriter {
        FrameWriter {
            sock: self.sock.clone(),
            buf: Vec::new(),
            sent: 0,
            fds: Vec::new(),
            max_frame: self.max_frame,
            spill: SpillPool::default(),
        }
    }

    /// Moves the frames queued here and not yet sent, with their descriptors, to the end
    /// of `to`'s queue: `to` sends them, after its own.
    pub(crate) fn move_pending_into(&mut self, to: &mut FrameWriter) {
        if to.pending() == 0 && self.sent == 0 {
            // The common case: a swap, no copy.
            to.buf.clear();
            to.sent = 0;
            std::mem::swap(&mut self.buf, &mut to.buf);
        } else {
            to.buf.extend_from_slice(&self.buf[self.sent..]);
            self.buf.clear();
        }
        self.sent = 0;
        to.fds.append(&mut self.fds);
    }

    /// Bytes queued and not yet sent.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Frees a large idle buffer, so one huge frame does not pin its memory.
    pub(crate) fn shrink_idle(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > KEEP_LIMIT {
            self.buf = Vec::new();
        }
    }

    /// Queues a frame built by `write`; a payload of `spill_at` bytes or more travels in a
    /// memfd instead: a frame of kind `big_kind`, empty, with the memfd as its last
    /// descriptor (see [`spilled`]). Large bodies then cost one copy, not a socket's worth
    /// of round trips.
    pub(crate) fn queue_spilling(
        &mut self,
        kind: u8,
        big_kind: u8,
        spill_at: usize,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
    ) -> Result<(), FrameError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER_LEN]);
        let (r, mut new_fds) = fds::collect_outgoing(|| write(&mut self.buf));
        if let Err(e) = r {
            self.buf.truncate(start);
            return Err(FrameError::Codec(e));
        }
        let len = self.buf.len() - start - HEADER_LEN;
        if len >= spill_at && len as u64 <= self.max_frame as u64 {
            let fd = sys::mem::memfd_with(&[&self.buf[start + HEADER_LEN..]]);
            self.buf.truncate(start + HEADER_LEN);
            new_fds.push(fd?);
            return self.seal(start, big_kind, new_fds);
        }
        self.seal(start, kind, new_fds)
    }

    /// Queues a frame whose payload is `head` followed by `body`, with `fds` attached.
    pub(crate) fn queue_parts(
        &mut self,
        kind: u8,
        head: &[u8],
        body: &[u8],
        fds: &[OwnedFd],
    ) -> Result<(), FrameError> {
        self.queue_parts_spilling(kind, None, head, body, fds)
    }

    /// [`queue_parts`](Self::queue_parts), but when `spill` is `Some((big_kind, at, token))`
    /// and the payload is `at` bytes or more, it travels in a memfd as in
    /// [`queue_spilling`](Self::queue_spilling). That memfd comes from a pool this writer
    /// keeps, and goes back to it once [`release_spilled`](Self::release_spilled) says the
    /// reader is done with `token`: large bodies are then copied into pages that exist.
    pub(crate) fn queue_parts_spilling(
        &mut self,
        kind: u8,
        spill: Option<(u8, usize, u64)>,
        head: &[u8],
        body: &[u8],
        fds: &[OwnedFd],
    ) -> Result<(), FrameError> {
        // A spilled body is bounded by the frame limit too, as `queue_spilling`'s is.
        let len = (head.len() + body.len()) as u64;
        if len > self.max_frame as u64 {
            return Err(FrameError::Oversized { len, max: self.max_frame });
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER_LEN]);
        let (kind, memfd, pooled) = match spill {
            Some((big_kind, at, token)) if head.len() + body.len() >= at => match self.spill_parts(head, body, token) {
                Ok((memfd, pooled)) => (big_kind, Some(memfd), pooled),
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e);
                }
            },
            _ => {
                self.buf.extend_from_slice(head);
                self.buf.extend_from_slice(body);
                (kind, None, None)
            }
        };
        let r = self.seal_with_copies(start, kind, fds, memfd);
        // A body that was not queued frees its buffer at once.
        if let Some((token, b)) = pooled {
            match r {
                Ok(()) => self.spill.in_flight.push_back((token, b)),
                Err(_) => self.spill.free.push(b),
            }
        }
        r
    }

    /// Copies `head` and `body` into a memfd for a frame being queued: a pooled one (its
    /// length then follows the frame's header, and it comes back with `token` for the
    /// pool) or, past the pool's limits, a fresh one.
    fn spill_parts(
        &mut self,
        head: &[u8],
        body: &[u8],
        token: u64,
    ) -> Result<(OwnedFd, Option<(u64, sys::mem::SpillBuf)>), FrameError> {
        let len = head.len() + body.len();
        match self.spill.take(len) {
            Some(Ok(mut b)) => {
                b.fill(&[head, body]);
                let fd = b.fd().try_clone_to_owned()?;
                self.buf.extend_from_slice(&(len as u64).to_le_bytes());
                Ok((fd, Some((token, b))))
            }
            Some(Err(e)) => Err(e.into()),
            None => Ok((sys::mem::memfd_with(&[head, body])?, None)),
        }
    }

    /// Seals the frame begun at `start` with copies of `fds`, then `memfd`, attached; a
    /// copy that fails drops the frame from the buffer.
    fn seal_with_copies(
        &mut self,
        start: usize,
        kind: u8,
        fds: &[OwnedFd],
        memfd: Option<OwnedFd>,
    ) -> Result<(), FrameError> {
        let mut dups = Vec::with_capacity(fds.len() + 1);
        for fd in fds {
            match fd.try_clone() {
                Ok(d) => dups.push(d),
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e.into());
                }
            }
        }
        dups.extend(memfd);
        self.seal(start, kind, dups)
    }

    /// The reader is done with every spilled body sent under a token up to `token`
    /// (tokens grow with each frame): their memfds may be filled again.
    pub(crate) fn release_spilled(&mut self, token: u64) {
        while self.spill.in_flight.front().is_some_and(|(t, _)| *t <= token) {
            let (_, b) = self.spill.in_flight.pop_front().expect("checked");
            self.spill.free.push(b);
        }
    }

    /// Bytes of spilled bodies sent and not yet released.
    pub(crate) fn spilled_in_flight(&self) -> usize {
        self.spill.in_flight.iter().map(|(_, b)| b.capacity()).sum()
    }

    /// The reader keeps the body sent under `token`: its memfd is never filled again.
    pub(crate) fn forget_spilled(&mut self, token: u64) {
        self.spill.in_flight.retain(|(t, _)| *t != token);
    }

    /// Sends everything queued, waiting at most until `deadline`.
    ///
    /// On `TimedOut` the unsent rest stays queued (a later flush goes on from there), so
    /// a deadline already past makes this a non-blocking "send what fits now".
    pub(crate) fn flush(&mut self, deadline: Option<Instant>) -> Result<(), FrameError> {
        while self.sent < self.buf.len() {
            let fds: Vec<BorrowedFd<'_>> = self.fds.iter().map(|f| f.as_fd()).collect();
            let nonblocking = deadline.is_some();
            match sys::sock::send(self.sock.as_fd(), &[IoSlice::new(&self.buf[self.sent..])], &fds, nonblocking) {
                Ok(n) => {
                    self.sent += n;
                    // Descriptors ride on the first byte sent; the kernel now holds them.
                    self.fds.clear();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let wait = remaining(deadline)?;
                    if !sys::fd::wait_ready(self.sock.as_fd(), sys::fd::Readiness::Write, wait)? {
                        return Err(FrameError::TimedOut);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe || e.kind() == io::ErrorKind::ConnectionReset => {
                    self.buf.clear();
                    self.sent = 0;
                    return Err(FrameError::Closed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.buf.clear();
        self.sent = 0;
        Ok(())
    }

    /// Queues one value and sends it at once.
    pub(crate) fn send<T: Serialize + ?Sized>(&mut self, kind: u8, value: &T) -> Result<(), FrameError> {
        self.queue(kind, value)?;
        self.flush(None)
    }
}

/// The receiving half.
#[derive(Debug)]
pub(crate) struct FrameReader {
    sock: Arc<OwnedFd>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    fds: VecDeque<OwnedFd>,
    max_frame: u32,
}

impl FrameReader {
    /// The socket, for readiness polling.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Whether a whole frame is already buffered (so `recv` will not block).
    pub(crate) fn has_frame(&self) -> bool {
        let avail = self.end - self.start;
        if avail < HEADER_LEN {
            return false;
        }
        let len = u32::from_le_bytes(self.buf[self.start..self.start + 4].try_into().unwrap()) as usize;
        avail >= HEADER_LEN + len
    }

    /// The socket, shared with the writing half.
    pub(crate) fn socket(&self) -> &Arc<OwnedFd> {
        &self.sock
    }

    /// Bytes received and not yet handed out as frames.
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Reads whatever has already arrived, without waiting (one non-blocking `recvmsg`).
    ///
    /// Returns whether [`recv`](Self::recv) would now return at once: a whole frame is
    /// buffered, or the socket ended or failed (which `recv` then reports). A waiter
    /// spins on this instead of `poll`, so the data is read by the call that finds it.
    pub(crate) fn try_fill(&mut self) -> bool {
        if self.has_frame() {
            return true;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < READ_CHUNK && (self.buf.is_empty() || self.end == self.buf.len()) {
            self.buf.resize(self.read_room(), 0);
        }
        if self.end == self.buf.len() {
            // A frame larger than the buffer: `recv` grows it.
            return false;
        }
        let mut arrived = Vec::new();
        let r = sys::sock::recv(self.sock.as_fd(), &mut self.buf[self.end..], &mut arrived, true);
        self.fds.extend(arrived);
        match r {
            Ok(0) => true,
            Ok(n) => {
                self.end += n;
                self.has_frame()
            }
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        }
    }

    /// Reads without sleeping until a whole frame is in (or the socket ended), or for at
    /// most `spin` and never past `deadline`: each try is one [`try_fill`](Self::try_fill),
    /// then a yield so that a peer on this CPU can run. For request/reply traffic, where
    /// the answer usually comes within microseconds and waking a sleeping process on
    /// another CPU costs tens of them on a VM. [`recv`](Self::recv) then returns at once,
    /// or sleeps as before.
    pub(crate) fn spin_fill(&mut self, spin: Duration, deadline: Option<Instant>) {
        // The buffer first, with no syscall: called right after sending, the socket
        // itself cannot have the answer yet, so the first try comes after a yield (on one
        // CPU, that yield is what lets the peer answer).
        if self.has_frame() {
            return;
        }
        let start = Instant::now();
        let end = deadline.map_or(start + spin, |d| d.min(start + spin));
        loop {
            std::thread::yield_now();
            if self.try_fill() || Instant::now() >= end {
                return;
            }
        }
    }

    /// Waits until something can be read, sleeping in `poll` rather than in `recvmsg`
    /// (unless a frame is buffered or arrives at once, or part of one is buffered). A
    /// reader asleep in `recvmsg` on a Unix stream socket is woken each time its peer
    /// reads what this end sent: the kernel's "room to write" wake-up reaches every waiter
    /// on the socket, and a worker that sends results in batches and then waits for its
    /// next task was woken for nothing once per batch (two context switches, and on a VM
    /// an interrupt across CPUs). A waiter in `poll` is woken only for what it asked.
    /// Errors are left to the `recv` that follows.
    pub(crate) fn wait_readable(&mut self) {
        if self.has_frame() || self.try_fill() || self.buffered() > 0 {
            return;
        }
        let _ = sys::fd::wait_ready(self.sock.as_fd(), sys::fd::Readiness::Read, None);
    }

    /// Receives the next frame, waiting at most until `deadline` (`None`: forever).
    pub(crate) fn recv(&mut self, deadline: Option<Instant>) -> Result<Frame<'_>, FrameError> {
        if self.start == self.end && self.buf.len() > KEEP_LIMIT {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
        self.fill(HEADER_LEN, deadline, true)?;
        let h = &self.buf[self.start..self.start + HEADER_LEN];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let (kind, nfds) = (h[4], h[5] as usize);
        if h[6] != 0 || h[7] != 0 {
            return Err(FrameError::Malformed(format!(
                "reserved header bytes are {:#04x} {:#04x}, not zero",
                h[6], h[7]
            )));
        }
        if len > self.max_frame {
            return Err(FrameError::Oversized { len: len as u64, max: self.max_frame });
        }
        if nfds > sys::sock::MAX_FDS_PER_MESSAGE {
            return Err(FrameError::Malformed(format!("header announces {nfds} file descriptors")));
        }
        let total = HEADER_LEN + len as usize;
        self.fill(total, deadline, false)?;
        if self.fds.len() < nfds {
            return Err(FrameError::Malformed(format!(
                "frame announces {nfds} file descriptors, {} arrived",
                self.fds.len()
            )));
        }
        let fds: Vec<OwnedFd> = self.fds.drain(..nfds).collect();
        let at = self.start;
        self.start += total;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Frame { kind, payload: &self.buf[at + HEADER_LEN..at + total], fds })
    }

    /// The size of buffer to read into: [`FIRST_CHUNK`] at first, [`READ_CHUNK`] once a
    /// read has filled that.
    fn read_room(&self) -> usize {
        if self.buf.is_empty() { FIRST_CHUNK } else { READ_CHUNK }
    }

    /// Reads until `need` bytes are buffered from `start`.
    fn fill(&mut self, need: usize, deadline: Option<Instant>, at_boundary: bool) -> Result<(), FrameError> {
        if self.end - self.start >= need {
            return Ok(());
        }
        // Make room: move the partial frame to the front, grow to fit what is announced
        // (in steps, so a lying header cannot make us allocate gigabytes up front).
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end < need {
            if self.end == self.buf.len() || self.buf.len() < need.min(EAGER_LIMIT) {
                let target = if need <= EAGER_LIMIT {
                    need.max(self.read_room())
                } else {
                    (self.buf.len() * 2).clamp(EAGER_LIMIT, need)
                };
                if target > self.buf.len() {
                    self.buf.resize(target, 0);
                }
            }
            let nonblocking = deadline.is_some();
            let mut arrived = Vec::new();
            let r = sys::sock::recv(self.sock.as_fd(), &mut self.buf[self.end..], &mut arrived, nonblocking);
            self.fds.extend(arrived);
            match r {
                Ok(0) => {
                    let got = self.end - self.start;
                    return Err(if at_boundary && got == 0 {
                        FrameError::Closed
                    } else {
                        FrameError::Truncated { expected: need, got }
                    });
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let wait = remaining(deadline)?;
                    if !sys::fd::wait_ready(self.sock.as_fd(), sys::fd::Readiness::Read, wait)? {
                        return Err(FrameError::TimedOut);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    let got = self.end - self.start;
                    return Err(if at_boundary && got == 0 {
                        FrameError::Closed
                    } else {
                        FrameError::Truncated { expected: need, got }
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// A framed connection: both halves over one socket.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) reader: FrameReader,
    pub(crate) writer: FrameWriter,
}

impl Channel {
    /// Wraps a connected stream socket.
    pub(crate) fn new(sock: impl Into<OwnedFd>, max_frame: u32) -> Channel {
        let sock = Arc::new(sock.into());
        Channel {
            reader: FrameReader {
                sock: sock.clone(),
                buf: Vec::new(),
                start: 0,
                end: 0,
                fds: VecDeque::new(),
                max_frame,
            },
            writer: FrameWriter {
                sock,
                buf: Vec::new(),
                sent: 0,
                fds: Vec::new(),
                max_frame,
                spill: SpillPool::default(),
            },
        }
    }

    /// A connected pair of channels (like `socketpair`), for tests and in-process use.
    #[cfg(test)]
    pub(crate) fn pair(max_frame: u32) -> io::Result<(Channel, Channel)> {
        let (a, b) = UnixStream::pair()?;
        Ok((Channel::new(a, max_frame), Channel::new(b, max_frame)))
    }

    /// The socket, for readiness polling.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.reader.sock.as_fd()
    }

    /// Splits into independently usable halves (e.g. one per thread).
    pub(crate) fn split(self) -> (FrameReader, FrameWriter) {
        (self.reader, self.writer)
    }

    /// Sets the largest frame either half accepts.
    pub(crate) fn set_max_frame(&mut self, max: u32) {
        self.reader.max_frame = max;
        self.writer.max_frame = max;
    }

    /// Sends one value at once.
    pub(crate) fn send<T: Serialize + ?Sized>(&mut self, kind: u8, value: &T) -> Result<(), FrameError> {
        self.writer.send(kind, value)
    }

    /// Receives the next frame.
    pub(crate) fn recv(&mut self, deadline: Option<Instant>) -> Result<Frame<'_>, FrameError> {
        self.reader.recv(deadline)
    }
}

impl From<UnixStream> for Channel {
    fn from(s: UnixStream) -> Channel {
        Channel::new(s, super::DEFAULT_MAX_FRAME)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use super::*;

    fn raw_pair(max: u32) -> (UnixStream, Channel) {
        let (a, b) = UnixStream::pair().unwrap();
        (a, Channel::new(b, max))
    }

    #[test]
    fn spin_fill_takes_a_frame_that_comes_while_it_polls() {
        let (mut a, mut b) = Channel::pair(1 << 20).unwrap();
        let sender = std::thread::spawn(move || {
            a.send(3, &42u64).unwrap();
            a
        });
        // Polls until the frame is in (the deadline only bounds a frame that never comes).
        while !b.reader.has_frame() {
            b.reader.spin_fill(REPLY_SPIN, None);
        }
        assert_eq!(b.recv(Some(Instant::now())).unwrap().decode::<u64>().unwrap(), 42);
        drop(sender.join().unwrap());
        // The peer is gone: spin_fill returns and recv reports the end.
        b.reader.spin_fill(Duration::from_secs(3600), None);
        assert!(matches!(b.recv(None), Err(FrameError::Closed)));
    }

    #[test]
    fn spin_fill_stops_at_its_deadline_with_nothing_read() {
        let (_a, mut b) = Channel::pair(1 << 20).unwrap();
        // With nothing coming, an hour's spin ends at the deadline, already passed.
        b.reader.spin_fill(Duration::from_secs(3600), Some(Instant::now()));
        assert!(!b.reader.has_frame());
        assert!(matches!(b.recv(Some(Instant::now())), Err(FrameError::TimedOut)));
    }

    #[test]
    fn values_round_trip_and_frames_batch_in_one_flush() {
        let (mut a, mut b) = Channel::pair(1 << 20).unwrap();
        for i in 0..100u64 {
            a.writer.queue(7, &(i, format!("n{i}"))).unwrap();
        }
        a.writer.flush(None).unwrap();
        for i in 0..100u64 {
            let f = b.recv(None).unwrap();
            assert_eq!(f.kind, 7);
            assert_eq!(f.decode::<(u64, String)>().unwrap(), (i, format!("n{i}")));
        }
    }

    #[test]
    fn a_large_frame_arrives_whole() {
        let (a, b) = Channel::pair(u32::MAX).unwrap();
        let (mut ar, mut aw) = a.split();
        let (mut br, mut bw) = b.split();
        let big = vec![0xabu8; 8 << 20];
        let sent = big.clone();
        // The writer blocks until the reader drains the socket: use two threads.
        let t = std::thread::spawn(move || aw.send(1, &sent).unwrap());
        let got: Vec<u8> = br.recv(None).unwrap().decode().unwrap();
        t.join().unwrap();
        assert_eq!(got, big);
        bw.send(2, &1u8).unwrap();
        assert_eq!(ar.recv(None).unwrap().kind, 2);
    }

    #[test]
    fn garbage_in_the_reserved_bytes_is_malformed() {
        let (mut raw, mut ch) = raw_pair(1024);
        raw.write_all(b"garbage!garbage!").unwrap();
        assert!(matches!(ch.recv(None), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn a_cut_frame_is_truncated_not_a_hang() {
        let (mut raw, mut ch) = raw_pair(1024);
        raw.write_all(&[100, 0, 0, 0, 1, 0, 0, 0, b'a', b'b']).unwrap();
        drop(raw);
        match ch.recv(None) {
            Err(FrameError::Truncated { expected, got }) => assert_eq!((expected, got), (108, 10)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_cut_header_is_truncated_and_a_clean_end_is_closed() {
        let (mut raw, mut ch) = raw_pair(1024);
        raw.write_all(&[1, 0, 0]).unwrap();
        drop(raw);
        assert!(matches!(ch.recv(None), Err(FrameError::Truncated { .. })));
        let (raw, mut ch) = raw_pair(1024);
        drop(raw);
        assert!(matches!(ch.recv(None), Err(FrameError::Closed)));
    }

    #[test]
    fn an_oversized_header_is_refused_before_reading_the_payload() {
        let (mut raw, mut ch) = raw_pair(1024);
        raw.write_all(&[0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0]).unwrap();
        match ch.recv(None) {
            Err(FrameError::Oversized { len, max }) => assert_eq!((len, max), (0x7fff_ffff, 1024)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn an_oversized_value_is_not_queued() {
        let (mut a, _b) = Channel::pair(16).unwrap();
        assert!(matches!(a.writer.queue(1, &vec![0u64; 64]), Err(FrameError::Oversized { .. })));
        assert_eq!(a.writer.pending(), 0);
    }

    #[test]
    fn a_payload_that_is_not_the_expected_type_is_a_codec_error() {
        let (mut a, mut b) = Channel::pair(1024).unwrap();
        a.writer.queue_bytes(3, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap();
        a.writer.queue(4, &5u8).unwrap();
        a.writer.flush(None).unwrap();
        assert!(b.recv(None).unwrap().decode::<String>().is_err());
        // The connection goes on.
        assert_eq!(b.recv(None).unwrap().decode::<u8>().unwrap(), 5);
    }

    #[test]
    fn spilled_bodies_reuse_their_memfd_once_released_and_bad_lengths_are_malformed() {
        let (mut a, mut b) = Channel::pair(1 << 16).unwrap();
        for (token, fill) in [(1u64, 1u8), (2, 2), (3, 3)] {
            a.writer.queue_parts_spilling(1, Some((2, 16, token)), b"head", &[fill; 5000], &[]).unwrap();
            a.writer.flush(None).unwrap();
            let f = b.recv(None).unwrap();
            assert_eq!(f.kind, 2);
            let mut fds = f.fds;
            let m = spilled(f.payload, &mut fds).unwrap();
            assert_eq!(m.bytes().len(), 5004);
            assert_eq!((&m.bytes()[..4], m.bytes()[4], m.bytes()[5003]), (&b"head"[..], fill, fill));
            a.writer.release_spilled(token);
        }
        // One memfd served all three.
        assert_eq!((a.writer.spill.free.len(), a.writer.spill.in_flight.len()), (1, 0));
        // A frame's own bytes must be empty or a length, and the length must fit the memfd.
        let memfd = || vec![crate::sys::mem::memfd_with(&[&[0u8; 10]]).unwrap()];
        assert!(matches!(spilled(&[1, 2, 3], &mut memfd()), Err(FrameError::Malformed(_))));
        assert!(matches!(spilled(&11u64.to_le_bytes(), &mut memfd()), Err(FrameError::Malformed(_))));
        assert_eq!(spilled(&10u64.to_le_bytes(), &mut memfd()).unwrap().bytes(), &[0u8; 10]);
        assert!(matches!(spilled(&[], &mut Vec::new()), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn a_kept_mapping_of_a_reused_memfd_shows_each_new_body() {
        let (mut a, mut b) = Channel::pair(1 << 16).unwrap();
        let mut maps = SpillMaps::default();
        let mut first = None;
        for (token, fill) in [(1u64, 1u8), (2, 2)] {
            a.writer.queue_parts_spilling(1, Some((2, 16, token)), b"head", &[fill; 5000], &[]).unwrap();
            a.writer.flush(None).unwrap();
            let f = b.recv(None).unwrap();
            let mut fds = f.fds;
            let (m, len) = maps.open(f.payload, &mut fds).unwrap();
            assert_eq!((len, m.bytes()[4], m.bytes()[len - 1]), (5004, fill, fill));
            // The second body comes through the mapping kept from the first.
            assert!(first.get_or_insert_with(|| m.clone()).bytes().as_ptr() == m.bytes().as_ptr());
            a.writer.release_spilled(token);
        }
        // A length past the memfd is malformed.
        let mut fds = vec![crate::sys::mem::memfd_with(&[&[0u8; 10]]).unwrap()];
        assert!(matches!(maps.open(&11u64.to_le_bytes(), &mut fds), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn a_deadline_passes_when_nothing_comes() {
        let (_raw, mut ch) = raw_pair(1024);
        let r = ch.recv(Some(Instant::now() + Duration::from_millis(20)));
        assert!(matches!(r, Err(FrameError::TimedOut)));
    }

    #[test]
    fn announced_descriptors_that_never_arrived_are_malformed() {
        let (mut raw, mut ch) = raw_pair(1024);
        raw.write_all(&[1, 0, 0, 0, 1, 2, 0, 0, 0]).unwrap();
        assert!(matches!(ch.recv(None), Err(FrameError::Malformed(_))));
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct CarriesFd(#[serde(with = "fd_index")] OwnedFd);

    mod fd_index {
        use std::os::fd::{AsFd, OwnedFd};

        use serde::{Deserialize, Deserializer, Serializer};

        pub(super) fn serialize<S: Serializer>(fd: &OwnedFd, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u32(crate::wire::fds::attach(fd.as_fd()).map_err(serde::ser::Error::custom)?)
        }
        pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OwnedFd, D::Error> {
            crate::wire::fds::take(u32::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    }

    #[test]
    fn descriptors_travel_with_their_frame() {
        let (mut a, mut b) = Channel::pair(1024).unwrap();
        let (mut p1, p2) = UnixStream::pair().unwrap();
        a.writer.queue(1, &0u8).unwrap();
        a.writer.queue(2, &CarriesFd(p2.into())).unwrap();
        a.writer.flush(None).unwrap();
        assert!(b.recv(None).unwrap().fds.is_empty());
        let got: CarriesFd = b.recv(None).unwrap().decode().unwrap();
        let mut s = UnixStream::from(got.0);
        assert!(s.as_raw_fd() >= 0);
        s.write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        std::io::Read::read_exact(&mut p1, &mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        p1.flush().unwrap();
    }

    #[test]
    fn a_descriptor_outside_a_frame_is_an_error_not_a_panic() {
        let (p, _q) = UnixStream::pair().unwrap();
        assert!(crate::wire::codec::encode(&CarriesFd(p.into())).is_err());
    }
}
