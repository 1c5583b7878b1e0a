//! File-descriptor helpers.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::FdFlags;

/// Sets or clears `FD_CLOEXEC` on `fd`.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = if on { FdFlags::CLOEXEC } else { FdFlags::empty() };
    rustix::io::fcntl_setfd(fd, flags)?;
    Ok(())
}

/// Takes ownership of an inherited descriptor number, after checking it is open.
///
/// Used once, by a child, for the socket its parent placed at a known number.
pub(crate) fn adopt_inherited(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "negative descriptor"));
    }
    // SAFETY: `raw` is a non-negative descriptor number; `fcntl(F_GETFD)` only reads its flags
    // and fails with EBADF when it is not open, in which case we do not take ownership.
    let open = unsafe { libc::fcntl(raw, libc::F_GETFD) } != -1;
    if !open {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and was placed for this process by its
    // parent; nothing else in the process owns it, since only `init()` calls this, once.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// What to wait for on a descriptor.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Readiness {
    /// Data (or end-of-file, or an exited process for a pidfd) can be read.
    Read,
    /// Data can be written.
    Write,
}

/// Waits until `fd` is ready, or `timeout` passes (`None`: forever). Returns whether it is ready.
pub(crate) fn wait_ready(fd: BorrowedFd<'_>, what: Readiness, timeout: Option<Duration>) -> io::Result<bool> {
    let flags = match what {
        Readiness::Read => PollFlags::IN,
        Readiness::Write => PollFlags::OUT,
    };
    let ts =
        timeout.map(|d| Timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as i64, tv_nsec: d.subsec_nanos() as _ });
    let mut fds = [PollFd::new(&fd, flags)];
    loop {
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until any of `fds` is readable, or `timeout` passes; returns the readable indices.
pub(crate) fn wait_any_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<usize>> {
    let ts =
        timeout.map(|d| Timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as i64, tv_nsec: d.subsec_nanos() as _ });
    let mut polls: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
    loop {
        match rustix::event::poll(&mut polls, ts.as_ref()) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(polls.iter().enumerate().filter(|(_, p)| !p.revents().is_empty()).map(|(i, _)| i).collect())
}
