//! A started child process as its parent sees it: pid, pidfd, exit status.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::isolation::{Contained, Containment};
use crate::sys;

/// A child process: safe to share between threads; waiting needs no lock, so one
/// thread can `join` while another sends a signal.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    pid: u32,
    pidfd: OwnedFd,
    /// The exit code once the child has been reaped.
    exited: Mutex<Option<i32>>,
    /// What to kill with it: its cgroup, or its process tree.
    contained: Contained,
}

impl ChildProcess {
    /// Takes charge of child `pid`, which must not have been reaped yet.
    pub(crate) fn new(pid: u32) -> io::Result<ChildProcess> {
        let pidfd = sys::proc::pidfd_open(pid)?;
        Ok(ChildProcess { pid, pidfd, exited: Mutex::new(None), contained: Contained::default() })
    }

    /// Kills what the child leaves behind as `contained` says, from now on.
    pub(crate) fn contain(&mut self, contained: Contained) {
        self.contained = contained;
    }

    /// How the child's descendants are contained.
    pub(crate) fn containment(&self) -> Containment {
        self.contained.containment
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
        let mut exited = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        if exited.is_none() && self.contained.containment != Containment::Off {
            // Its zombie pins its pid and process group while what it left is killed.
            if !sys::contain::has_exited(self.pidfd.as_fd()) {
                return Ok(None);
            }
            self.contained.ended(self.pid);
        }
        if exited.is_none()
            && let Some(code) = sys::exec::try_reap(self.pidfd.as_fd())?
        {
            *exited = Some(code);
        }
        Ok(*exited)
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
    /// SIGKILL kills the child's whole tree when it is contained.
    pub(crate) fn signal(&self, sig: i32) -> io::Result<()> {
        // Held so that the child is not reaped (its pid freed) during the walk.
        let exited = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        if exited.is_some() {
            // Reaped: nothing to signal (a drop of a worker that ended costs no syscall).
            return Ok(());
        }
        if sig == libc::SIGKILL && self.contained.containment != Containment::Off {
            self.contained.kill(self.pid);
        }
        drop(exited);
        sys::proc::pidfd_signal(self.pidfd.as_fd(), sig)
    }

    /// SIGKILL and reap.
    pub(crate) fn kill_and_reap(&self) -> io::Result<i32> {
        self.signal(libc::SIGKILL)?;
        self.wait()
    }
}
