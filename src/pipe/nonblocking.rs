//! `Connection::recv_async` and `send_async`: futures that never block their thread.
//!
//! Each poll tries the operation without waiting (the frame reader's and writer's
//! deadline of "now" makes `recv`/`flush` non-blocking, keeping a partial frame for the
//! next try); when it cannot complete, a [`Waiter`] thread polls a duplicate of the socket
//! for readability (or writability) and wakes the task, which tries again. The helper
//! thread only watches the descriptor, never reads or writes, so dropping the future
//! loses nothing.

use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Connection, KIND_VALUE, PipeError};
use crate::sync::WAIT_SLICE;
use crate::sync::waiter::{Waiter, until_stopped};
use crate::sys;
use crate::wire::FrameError;

/// Waits (in slices, until `stop`) until `fd` is ready for `what`, or fails.
pub(super) fn watch(fd: OwnedFd, what: sys::fd::Readiness) -> impl FnOnce(&AtomicBool) + Send + 'static {
    move |stop| {
        // An error ends the wait too: the next try reports it.
        until_stopped(stop, || sys::fd::wait_ready(fd.as_fd(), what, Some(WAIT_SLICE)).unwrap_or(true))
    }
}

/// The future of [`Connection::recv_async`]: the next value, or why none can come.
///
/// Made without waiting; it waits only when polled, and dropping it reads nothing.
///
/// ```
/// use multiproc::{Pipe, Recv};
///
/// let (a, b) = Pipe::duplex::<u32>()?;
/// let next: Recv<'_, u32> = b.recv_async(); // nothing sent yet: still fine
/// a.send(7)?;
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// assert_eq!(rt.block_on(next)?, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a future does nothing unless awaited"]
#[derive(Debug)]
pub struct Recv<'c, T> {
    conn: &'c Connection<T>,
    waiter: Waiter,
}

/// The future of [`Connection::send_async`]: done once the value is written.
///
/// Dropped before it is ready, it has sent nothing.
///
/// ```
/// use multiproc::{Pipe, Sending};
///
/// let (a, b) = Pipe::duplex::<String>()?;
/// let sending: Sending<'_, String> = a.send_async("hi".to_string());
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// rt.block_on(sending)?;
/// assert_eq!(b.recv()?, "hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a future does nothing unless awaited"]
pub struct Sending<'c, T> {
    conn: &'c Connection<T>,
    value: Option<T>,
    waiter: Waiter,
}

impl<T> std::fmt::Debug for Sending<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sending").field("queued", &self.value.is_none()).finish()
    }
}

// `value` is only moved out, never pinned.
impl<T> Unpin for Sending<'_, T> {}

impl<T: DeserializeOwned> Connection<T> {
    /// Receives the next value, for async code: a future that never blocks its thread
    /// (any runtime, or none), with the outcomes of [`recv`](Connection::recv). While
    /// nothing has arrived, one helper thread watches the socket and wakes the task; it
    /// reads nothing, so dropping the future (a lost `select!`) loses no message.
    ///
    /// ```
    /// use multiproc::Pipe;
    ///
    /// let (a, b) = Pipe::duplex::<String>()?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// let got = rt.block_on(async {
    ///     a.send_async("hello".to_string()).await?;
    ///     b.recv_async().await
    /// })?;
    /// assert_eq!(got, "hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_async(&self) -> Recv<'_, T> {
        Recv { conn: self, waiter: Waiter::default() }
    }

    /// One receive that does not wait: `None` if no whole message is in yet.
    fn try_recv(&self) -> Option<Result<T, PipeError>> {
        if let Err(e) = self.check_read() {
            return Some(Err(e));
        }
        // Another thread in a blocking `recv` holds the reader: it takes what comes.
        let mut r = self.reader.try_lock().ok()?;
        match r.recv(Some(Instant::now())) {
            Ok(frame) => Some(frame.decode::<T>().map_err(PipeError::Decode)),
            Err(FrameError::TimedOut) => None,
            Err(e) => Some(Err(e.into())),
        }
    }
}

impl<T: DeserializeOwned> Future for Recv<'_, T> {
    type Output = Result<T, PipeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            if let Some(r) = self.conn.try_recv() {
                return Poll::Ready(r);
            }
            let fd = match self.conn.sock.try_clone() {
                Ok(fd) => fd,
                Err(e) => return Poll::Ready(Err(e.into())),
            };
            if self.waiter.poll_wait(cx, watch(fd, sys::fd::Readiness::Read)).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<T: Serialize> Connection<T> {
    /// Sends `value`, for async code: a future that never blocks its thread, with the
    /// outcomes of [`send`](Connection::send). While the other end's buffer is full, one
    /// helper thread watches the socket and wakes the task. A future dropped after its
    /// first poll may still deliver its message whole, with the next send on this end
    /// (a message is never cut short).
    ///
    /// ```
    /// use multiproc::Pipe;
    ///
    /// let (a, b) = Pipe::duplex::<u32>()?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// rt.block_on(a.send_async(7))?;
    /// assert_eq!(b.recv()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_async(&self, value: T) -> Sending<'_, T> {
        Sending { conn: self, value: Some(value), waiter: Waiter::default() }
    }

    /// Queues the value (on the first call) and sends what fits now: `None` if some is left.
    fn try_send(&self, value: &mut Option<T>) -> Option<Result<(), PipeError>> {
        if let Err(e) = self.check_write() {
            return Some(Err(e));
        }
        // Another thread in a blocking `send` holds the writer: wait for room as it does.
        let mut w = self.writer.try_lock().ok()?;
        if let Some(v) = value.take() {
            match w.queue(KIND_VALUE, &v) {
                Ok(()) => {}
                Err(FrameError::Malformed(m)) => return Some(Err(PipeError::Encode(m))),
                Err(e) => return Some(Err(e.into())),
            }
        }
        match w.flush(Some(Instant::now())) {
            Ok(()) => Some(Ok(())),
            Err(FrameError::TimedOut) => None,
            Err(e) => Some(Err(e.into())),
        }
    }
}

impl<T: Serialize> Future for Sending<'_, T> {
    type Output = Result<(), PipeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            if let Some(r) = this.conn.try_send(&mut this.value) {
                return Poll::Ready(r);
            }
            let fd = match this.conn.sock.try_clone() {
                Ok(fd) => fd,
                Err(e) => return Poll::Ready(Err(e.into())),
            };
            if this.waiter.poll_wait(cx, watch(fd, sys::fd::Readiness::Write)).is_pending() {
                return Poll::Pending;
            }
        }
    }
}
