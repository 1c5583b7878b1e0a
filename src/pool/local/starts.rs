//! Workers being started: each on a start thread (an exec and a handshake take
//! milliseconds, which neither `Pool::build` nor the driver should wait for one after
//! another; the threads are kept for the next start, `State::launch`), their results for the build and the driver, and the pidfds of the children
//! still in their handshake, so that a pool that closes or terminates can kill them.
//!
//! Invariant: every start that was launched ends as exactly one entry in `done` (`None`
//! for one that was cancelled, after its process was reaped), so whoever counts launches
//! can wait for them all.

use std::os::fd::OwnedFd;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::worker_handle::Worker;
use crate::sys;

/// A start's result: `None` when the start was cancelled (its process is already gone).
pub(crate) type Started = (u32, Option<Result<Worker, crate::Error>>);

#[derive(Default)]
struct State {
    done: Vec<Started>,
    /// Children between their exec and their handshake's end: number, pidfd, cancelled.
    running: Vec<(u32, OwnedFd, bool)>,
    /// Every start is cancelled, those whose child does not exist yet too (the pool is
    /// closing or terminating: no start is wanted any more).
    cancelled: bool,
}

/// The pool's starts in flight and finished (see the module's invariant).
#[derive(Default)]
pub(crate) struct Starts {
    state: Mutex<State>,
    arrived: Condvar,
}

impl Starts {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A child of start `n` exists (between its exec and its handshake's end): its
    /// pidfd, so that [`cancel`](Self::cancel) can kill it.
    pub(crate) fn running(&self, n: u32, pidfd: OwnedFd) {
        let mut st = self.lock();
        let cancelled = st.cancelled;
        if cancelled {
            // Its start was cancelled before its child existed: killed at once, so that a
            // closing pool does not wait for a handshake it would only answer with STOP.
            let _ = sys::proc::pidfd_signal(std::os::fd::AsFd::as_fd(&pidfd), libc::SIGKILL);
        }
        st.running.push((n, pidfd, cancelled));
    }

    /// Start `n` ended: its entry goes to `done` (see the invariant).
    pub(crate) fn finish(&self, n: u32, r: Result<Worker, crate::Error>) {
        let cancelled = {
            let mut st = self.lock();
            let at = st.running.iter().position(|(m, _, _)| *m == n);
            let killed = at.is_some_and(|i| st.running.swap_remove(i).2);
            // A worker that got through its handshake after the cancel is not wanted either.
            killed || st.cancelled
        };
        let entry = if cancelled {
            // Dropping a worker kills and reaps it: nothing is left once the entry is in.
            drop(r);
            None
        } else {
            Some(r)
        };
        self.lock().done.push((n, entry));
        self.arrived.notify_all();
    }

    /// Takes the starts that ended.
    pub(crate) fn take(&self) -> Vec<Started> {
        std::mem::take(&mut self.lock().done)
    }

    /// Whether some start ended and waits to be taken.
    pub(crate) fn any_done(&self) -> bool {
        !self.lock().done.is_empty()
    }

    /// Kills every child still in its handshake, and from now on every child of a start
    /// still running or launched later as soon as it exists; those starts end as
    /// cancelled (the pool no longer wants workers: it is closing or terminating).
    pub(crate) fn cancel(&self) {
        let mut st = self.lock();
        st.cancelled = true;
        for (_, pidfd, cancelled) in &mut st.running {
            if !*cancelled {
                *cancelled = true;
                let _ = sys::proc::pidfd_signal(std::os::fd::AsFd::as_fd(pidfd), libc::SIGKILL);
            }
        }
    }

    /// For `Pool::build`: waits until, among the `total` starts launched, one failed, or
    /// all ended, or (unless `all`) one succeeded, and takes those that ended.
    pub(crate) fn wait_first(&self, total: usize, all: bool) -> Vec<Started> {
        let mut st = self.lock();
        loop {
            let failed = st.done.iter().any(|(_, r)| !matches!(r, Some(Ok(_))));
            let succeeded = st.done.iter().any(|(_, r)| matches!(r, Some(Ok(_))));
            if failed || st.done.len() >= total || (succeeded && !all) {
                return std::mem::take(&mut st.done);
            }
            st = self.arrived.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits until `count` more starts have ended, and takes them.
    pub(crate) fn wait_all(&self, count: usize) -> Vec<Started> {
        let mut st = self.lock();
        while st.done.len() < count {
            st = self.arrived.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        std::mem::take(&mut st.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_whose_child_appears_after_the_cancel_is_killed_and_ends_cancelled() {
        let starts = Starts::default();
        starts.cancel();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        starts.running(7, sys::proc::pidfd_open(child.id()).unwrap());
        // Killed at once: `wait` returns (a sleep that ran on would make this hang).
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
        starts.finish(7, Err(crate::Error::Io(std::io::Error::other("its handshake failed"))));
        let done = starts.wait_all(1);
        assert!(matches!(done.as_slice(), [(7, None)]), "a cancelled start ends as None");
    }

    #[test]
    fn a_start_that_ends_after_the_cancel_ends_cancelled_whatever_its_result() {
        let starts = Starts::default();
        starts.finish(1, Err(crate::Error::Io(std::io::Error::other("before the cancel"))));
        starts.cancel();
        starts.finish(2, Err(crate::Error::Io(std::io::Error::other("after the cancel"))));
        let done = starts.wait_all(2);
        assert!(matches!(done[0], (1, Some(Err(_)))), "a start that ended before the cancel keeps its result");
        assert!(matches!(done[1], (2, None)));
    }
}
