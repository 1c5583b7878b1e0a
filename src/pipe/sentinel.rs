//! `Process::join_async`: a process's end as a future, so async code waits on processes,
//! connections, queues and pool results together (`select!`, `join!`), as Python's
//! `multiprocessing.connection.wait` does with sentinels.
//!
//! It lives here, beside the other async calls on descriptors, rather than in `process`:
//! it is built on the helper-thread wait (`sync::waiter`) of the shared-state layer. The
//! helper only polls a duplicate of the child's pidfd; the child is reaped by the
//! task's own poll (`exitcode`), never by the helper.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::nonblocking::watch;
use crate::Error;
use crate::process::Process;
use crate::sync::waiter::Waiter;
use crate::sys;

/// The future of [`Process::join_async`]: the child's exit code once it has ended.
///
/// ```
/// use multiproc::{Joined, Process};
///
/// fn quits(_: ()) { std::process::exit(4) }
///
/// multiproc::init();
/// let mut p = Process::new(quits, ());
/// p.start()?;
/// let ended: Joined<'_> = p.join_async();
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// assert_eq!(rt.block_on(ended)?, 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a future does nothing unless awaited"]
#[derive(Debug)]
pub struct Joined<'p> {
    process: &'p Process,
    waiter: Waiter,
}

impl Process {
    /// Waits for the child to end, for async code: a future that never blocks its thread
    /// (any runtime, or none), ready with its [`exitcode`](Process::exitcode). While the
    /// child runs, one helper thread watches its pidfd (the [`sentinel`](Process::sentinel))
    /// and wakes the task. [`Error::State`] if it was never started (or was closed).
    ///
    /// ```
    /// use multiproc::{Pipe, Process};
    ///
    /// fn quits(_: ()) { std::process::exit(3) }
    ///
    /// multiproc::init();
    /// let (mine, _theirs) = Pipe::duplex::<u8>()?; // nobody sends on this one
    /// let mut p = Process::new(quits, ());
    /// p.start()?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// // Whichever comes first: a message, or the child's end (Python's `wait` on sentinels).
    /// let code = rt.block_on(async {
    ///     tokio::select! {
    ///         m = mine.recv_async() => match m {
    ///             Ok(m) => panic!("no message was sent: {m}"),
    ///             // The child's end closes its side of the pipe too, maybe seen first.
    ///             Err(_) => p.join_async().await,
    ///         },
    ///         code = p.join_async() => code,
    ///     }
    /// })?;
    /// assert_eq!(code, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_async(&self) -> Joined<'_> {
        Joined { process: self, waiter: Waiter::default() }
    }
}

impl Future for Joined<'_> {
    type Output = Result<i32, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let Some(pidfd) = self.process.sentinel() else {
                return Poll::Ready(Err(Error::State("can only join a started process")));
            };
            if let Some(code) = self.process.exitcode() {
                return Poll::Ready(Ok(code));
            }
            let fd = match pidfd.try_clone_to_owned() {
                Ok(fd) => fd,
                Err(e) => return Poll::Ready(Err(Error::Io(e))),
            };
            if self.waiter.poll_wait(cx, watch(fd, sys::fd::Readiness::Read)).is_pending() {
                return Poll::Pending;
            }
        }
    }
}
