//! A started child process as its parent sees it: pid, pidfd, exit status.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sys;

/// Python's convention: the exit code, or `-N` when killed by signal N.
pub(crate) fn exitcode(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => -s,
        (None, None) => -1,
    }
}

/// A child process: safe to share between threads; waiting needs no lock, so one
/// thread can `join` while another sends a signal.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    pid: u32,
    pidfd: OwnedFd,
    state: Mutex<(Child, Option<i32>)>,
}

impl ChildProcess {
    pub(crate) fn new(child: Child) -> io::Result<ChildProcess> {
        let pid = child.id();
        let pidfd = sys::proc::pidfd_open(pid)?;
        Ok(ChildProcess { pid, pidfd, state: Mutex::new((child, None)) })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Readable once the child has exited; for event loops.
    pub(crate) fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The exit code if the child has ended (reaping it), `None` while it runs.
    pub(crate) fn try_wait(&self) -> io::Result<Option<i32>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.1.is_none()
            && let Some(status) = st.0.try_wait()?
        {
            st.1 = Some(exitcode(status));
        }
        Ok(st.1)
    }

    /// Waits up to `timeout` (`None`: forever) for the child to end; returns its exit code.
    pub(crate) fn wait_timeout(&self, timeout: Option<Duration>) -> io::Result<Option<i32>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(code) = self.try_wait()? {
                return Ok(Some(code));
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => Some(left),
                    None => return Ok(None),
                },
            };
            sys::fd::wait_ready(self.pidfd.as_fd(), sys::fd::Readiness::Read, left)?;
        }
    }

    /// Waits for the child to end.
    pub(crate) fn wait(&self) -> io::Result<i32> {
        Ok(self.wait_timeout(None)?.expect("waiting without a deadline returns a status"))
    }

    /// Sends signal `sig`; a no-op once the child has ended.
    pub(crate) fn signal(&self, sig: i32) -> io::Result<()> {
        sys::proc::pidfd_signal(self.pidfd.as_fd(), sig)
    }

    /// SIGKILL and reap.
    pub(crate) fn kill_and_reap(&self) -> io::Result<i32> {
        self.signal(libc::SIGKILL)?;
        self.wait()
    }
}
