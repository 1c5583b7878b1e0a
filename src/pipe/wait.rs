//! Waiting on several connections at once, like `multiprocessing.connection.wait`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use super::Connection;
use crate::Fd;
use crate::sys;

/// Something [`wait`] can watch: it has a descriptor that polls readable when it has
/// something to read, and may hold already-received data.
///
/// ```
/// use multiproc::{Fd, Pipe, Ready, wait};
/// use std::time::Duration;
///
/// multiproc::init();
/// let (a, b) = Pipe::duplex::<u32>()?;
/// let (reader, writer) = std::io::pipe()?; // any descriptor can be watched, as an `Fd`
/// let reader = Fd::from(std::os::fd::OwnedFd::from(reader));
/// b.send(1)?;
/// let watched: [&dyn Ready; 2] = [&a, &reader];
/// assert_eq!(wait(&watched, Some(Duration::from_secs(5)))?, [0]);
/// # drop(writer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Ready {
    /// The descriptor to poll for readability.
    fn ready_fd(&self) -> BorrowedFd<'_>;

    /// Whether something can be read without waiting (data already buffered in-process).
    fn buffered(&self) -> bool {
        false
    }
}

impl<T> Ready for Connection<T> {
    fn ready_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn buffered(&self) -> bool {
        self.has_buffered_frame()
    }
}

impl Ready for Fd {
    fn ready_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

/// Any borrowed descriptor, such as a [`Process::sentinel`](crate::Process::sentinel), so
/// that [`wait`] watches processes and connections together, as Python's does.
///
/// ```
/// use multiproc::{Pipe, Process, wait};
///
/// fn quick(_: ()) {}
///
/// multiproc::init();
/// let (conn, _other) = Pipe::duplex::<u8>()?;
/// let mut p = Process::new(quick, ());
/// p.start()?;
/// let sentinel = p.sentinel().unwrap();
/// assert_eq!(wait(&[&conn, &sentinel], None)?, [1]); // the process ended
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl Ready for BorrowedFd<'_> {
    fn ready_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

/// Waits until at least one of `objects` has something to read (a message, or the end
/// of the stream: a closed peer counts as ready, and its `recv` reports it), or
/// `timeout` passes (`None`: no limit). Returns the indices of the ready ones, in order;
/// empty on timeout.
///
/// ```
/// use multiproc::{Pipe, wait};
/// use std::time::Duration;
///
/// multiproc::init();
/// let (a1, b1) = Pipe::duplex::<u32>()?;
/// let (a2, b2) = Pipe::duplex::<u32>()?;
/// b2.send(7)?;
/// assert_eq!(wait(&[&a1, &a2], Some(Duration::from_secs(5)))?, [1]);
/// assert_eq!(a2.recv()?, 7);
/// assert!(wait(&[&a1, &a2], Some(Duration::ZERO))?.is_empty());
/// # drop((b1, b2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn wait(objects: &[&dyn Ready], timeout: Option<Duration>) -> io::Result<Vec<usize>> {
    let now: Vec<usize> = objects.iter().enumerate().filter(|(_, o)| o.buffered()).map(|(i, _)| i).collect();
    if !now.is_empty() {
        return Ok(now);
    }
    let fds: Vec<BorrowedFd<'_>> = objects.iter().map(|o| o.ready_fd()).collect();
    sys::fd::wait_any_readable(&fds, timeout)
}
