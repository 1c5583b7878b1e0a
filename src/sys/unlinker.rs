//! A watcher process that removes the names this process leaves in `/dev/shm` when it
//! ends in a way that runs no exit hook (SIGKILL, `abort`): Python's resource tracker,
//! for one process's own segments.
//!
//! The watcher is started by a double fork, so it is nobody's child here (the middle
//! process exits at once and is reaped). It holds the read end of a pipe whose write
//! end only this process holds (close-on-exec, so no child inherits it), and a table of
//! paths this process keeps up to date. When the pipe reads end-of-file, this process
//! has ended, however; the watcher unlinks every path still marked live, then exits.
//! It ignores the terminal's signals and holds no other descriptor.
//!
//! The table is a memfd of fixed-size slots: a live byte, then a NUL-terminated path.
//! Between fork and exit the watcher runs only async-signal-safe system calls (other
//! threads of the parent may hold locks it would otherwise need): no allocation.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// Bytes per table slot: the live byte, then the path and its NUL.
pub(crate) const SLOT: usize = 272;
/// The longest path a slot holds.
pub(crate) const MAX_PATH: usize = SLOT - 2;

/// This process's end of a running watcher.
#[derive(Debug)]
pub(crate) struct Unlinker {
    table: OwnedFd,
    /// Never written: its closing, when this process ends, is the message.
    _lifeline: OwnedFd,
}

/// The watcher's middle process: a raw fork, inside the cgroup `into` if given and the
/// kernel allows (then `true`: the middle need not move out of this process's cgroup).
/// 0 in the child.
fn fork_middle(into: Option<BorrowedFd<'_>>) -> io::Result<(u32, bool)> {
    // SAFETY: the child runs only what `Unlinker::start` gives it: system calls, no lock.
    match unsafe { crate::sys::clone::fork_raw(into, false) } {
        Err(e) if into.is_some() && crate::sys::clone::refused(&e) => {
            // SAFETY: as above, without the cgroup: the child moves itself.
            unsafe { crate::sys::clone::fork_raw(None, false) }.map(|pid| (pid, false))
        }
        other => other.map(|pid| (pid, into.is_some())),
    }
}

impl Unlinker {
    /// Starts a watcher with an empty table.
    pub(crate) fn start() -> io::Result<Unlinker> {
        let table = rustix::fs::memfd_create("multiproc-shm-names", rustix::fs::MemfdFlags::CLOEXEC)?;
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let (lifeline, table_fd) = (read.as_raw_fd(), table.as_raw_fd());
        // A contained child's watcher leaves its cgroup, which is killed when the child
        // ends: the watcher's work starts then. The middle child is created in the cgroup
        // above where the kernel allows (no move, which may wait for an RCU grace period),
        // else it moves itself there.
        let leave = crate::sys::contain::helpers_cgroup();
        let into = crate::sys::contain::helpers_cgroup_dir();
        let (middle, placed) = fork_middle(into.as_ref().map(AsFd::as_fd))?;
        if middle == 0 {
            // SAFETY: the middle child of a process that may have other threads makes only
            // system calls: a raw fork (no atfork handler, no lock), `_exit`; the grandchild
            // becomes the watcher, which is async-signal-safe code (see `watch`).
            unsafe {
                // The middle child leaves the cgroup (unless created outside it) before it
                // forks the watcher, and the caller waits for the middle child: by the
                // time `start` returns, the watcher is out of the cgroup, so a kill of the
                // cgroup right after (a creator terminated at once) cannot take it along.
                if !placed && let Some(procs) = leave {
                    crate::sys::contain::leave_cgroup(procs);
                }
                if crate::sys::clone::fork_raw(None, false).ok() == Some(0) {
                    watch(lifeline, table_fd);
                }
                libc::_exit(0);
            }
        }
        let mut status = 0;
        loop {
            // SAFETY: reaps the middle child we just forked; `status` is a local.
            let r = unsafe { libc::waitpid(middle as libc::pid_t, &mut status, 0) };
            if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break;
            }
        }
        drop(read);
        Ok(Unlinker { table, _lifeline: write })
    }

    /// Marks `slot` live, holding `path`, for the watcher.
    pub(crate) fn record(&self, slot: usize, path: &str) -> io::Result<()> {
        if path.len() > MAX_PATH || path.as_bytes().contains(&0) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("`{path}` does not fit a table slot")));
        }
        let mut buf = [0u8; SLOT];
        buf[0] = 1;
        buf[1..1 + path.len()].copy_from_slice(path.as_bytes());
        write_at(self.table.as_fd(), &buf, slot)
    }

    /// Marks `slot` free: nothing for the watcher to do there.
    pub(crate) fn clear(&self, slot: usize) -> io::Result<()> {
        write_at(self.table.as_fd(), &[0u8], slot)
    }

    /// Every path the watcher would unlink now.
    #[cfg(test)]
    pub(crate) fn live(&self) -> Vec<String> {
        let mut out = Vec::new();
        scan(self.table.as_raw_fd(), |p| out.push(p.to_string_lossy().into_owned()));
        out
    }
}

fn write_at(fd: BorrowedFd<'_>, bytes: &[u8], slot: usize) -> io::Result<()> {
    let n = rustix::io::pwrite(fd, bytes, (slot * SLOT) as u64)?;
    if n != bytes.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write to the shared-memory name table"));
    }
    Ok(())
}

/// Calls `f` with each live path of the table at `table`. Async-signal-safe.
fn scan(table: RawFd, mut f: impl FnMut(&CStr)) {
    let mut buf = [0u8; SLOT];
    let mut slot = 0i64;
    loop {
        // SAFETY: reads at most SLOT bytes into a local buffer of that size.
        let n = unsafe { libc::pread(table, buf.as_mut_ptr().cast(), SLOT, slot * SLOT as i64) };
        if n < 1 {
            return;
        }
        if buf[0] == 1
            && let Ok(path) = CStr::from_bytes_until_nul(&buf[1..n as usize])
        {
            f(path);
        }
        slot += 1;
    }
}

/// The watcher: keep only the two descriptors, wait for end-of-file, unlink, exit.
fn watch(lifeline: RawFd, table: RawFd) -> ! {
    // SAFETY: only async-signal-safe calls on descriptors we own and local buffers.
    unsafe {
        libc::setsid();
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
        libc::prctl(libc::PR_SET_NAME, c"multiproc-shm".as_ptr());
        // Out of the way of 0 and 1 first, in case either is one of ours.
        let (l, t) = (libc::fcntl(lifeline, libc::F_DUPFD_CLOEXEC, 10), libc::fcntl(table, libc::F_DUPFD_CLOEXEC, 10));
        if l < 0 || t < 0 || libc::dup2(l, 0) < 0 || libc::dup2(t, 1) < 0 {
            libc::_exit(1);
        }
        if libc::syscall(libc::SYS_close_range, 2u32, u32::MAX, 0u32) != 0 {
            for fd in 2..4096 {
                libc::close(fd);
            }
        }
        let mut buf = [0u8; 64];
        loop {
            let n = libc::read(0, buf.as_mut_ptr().cast(), buf.len());
            if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                break;
            }
        }
        scan(1, |path| {
            libc::unlink(path.as_ptr());
        });
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_what_is_recorded_and_not_cleared() {
        let u = Unlinker::start().unwrap();
        u.record(0, "/dev/shm/a").unwrap();
        u.record(2, "/dev/shm/c").unwrap();
        u.record(1, "/dev/shm/b").unwrap();
        u.clear(0).unwrap();
        assert_eq!(u.live(), ["/dev/shm/b", "/dev/shm/c"]);
        u.record(0, "/dev/shm/d").unwrap();
        assert_eq!(u.live(), ["/dev/shm/d", "/dev/shm/b", "/dev/shm/c"]);
        assert!(u.record(3, &"x".repeat(MAX_PATH + 1)).is_err());
    }
}
