//! Reaping children whose `Process` handle was dropped before they ended.
//!
//! Such a child runs on, as in Python; only its end needs handling: reaping it (no
//! zombie) and dropping what the parent kept for it (its pidfd and socket). A reaper
//! thread, started when the first such child is handed over, polls their pidfds and ends
//! when none is left, so an idle program keeps no thread and no descriptor for it.
//!
//! The decision of what to keep is [`Orphans::reap`], over the [`Wait`] trait, so it is
//! unit-tested without processes (as tokio's `process/unix/orphan.rs` does).

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sys::event::{PollFd, PollFlags, Wakeup, poll};

/// A child the reaper looks after.
pub(super) trait Wait {
    /// Its exit status if it has ended (reaping it then), `None` while it runs.
    fn try_wait(&self) -> io::Result<Option<i32>>;
    /// Readable once it has ended.
    fn pidfd(&self) -> BorrowedFd<'_>;
}

/// Children handed over and not yet reaped.
pub(super) struct Orphans<W> {
    list: Vec<W>,
}

impl<W: Wait> Orphans<W> {
    pub(super) const fn new() -> Orphans<W> {
        Orphans { list: Vec::new() }
    }

    pub(super) fn push(&mut self, child: W) {
        self.list.push(child);
    }

    /// Reaps the children that have ended and drops them; keeps the ones still running.
    /// One whose wait fails is dropped too: the only failures left (the retry on `EINTR`
    /// is below) mean there is nothing to reap, as when something else reaped it.
    pub(super) fn reap(&mut self) {
        self.list.retain(|c| matches!(c.try_wait(), Ok(None)));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(super) fn children(&self) -> &[W] {
        &self.list
    }
}

/// The orphans and, while it runs, the reaper thread's wake-up.
pub(super) struct Reaper<W> {
    state: Mutex<(Orphans<W>, Option<Arc<Wakeup>>)>,
}

impl<W: Wait + Clone + Send + Sync + 'static> Reaper<W> {
    pub(super) const fn new() -> Reaper<W> {
        Reaper { state: Mutex::new((Orphans::new(), None)) }
    }

    fn lock(&self) -> MutexGuard<'_, (Orphans<W>, Option<Arc<Wakeup>>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes charge of `child` until it ends. If the reaper thread cannot start, the
    /// child waits for the next hand-over, `active_children()` or the program's exit.
    pub(super) fn adopt(&'static self, child: W) {
        let mut st = self.lock();
        st.0.push(child);
        st.0.reap();
        if st.0.is_empty() {
            return;
        }
        if let Some(w) = &st.1 {
            w.wake();
            return;
        }
        let Ok(wakeup) = Wakeup::new().map(Arc::new) else { return };
        let w = wakeup.clone();
        let started = std::thread::Builder::new().name("multiproc-reaper".into()).spawn(move || self.run(&w));
        if started.is_ok() {
            st.1 = Some(wakeup);
        }
    }

    /// The reaper thread: waits for any orphan to end or a new one to arrive, reaps, and
    /// returns once none is left.
    fn run(&self, wakeup: &Wakeup) {
        loop {
            let children: Vec<W> = {
                let mut st = self.lock();
                st.0.reap();
                if st.0.is_empty() {
                    st.1 = None;
                    return;
                }
                st.0.children().to_vec()
            };
            let mut fds: Vec<PollFd<'_>> = vec![PollFd::from_borrowed_fd(wakeup.fd(), PollFlags::IN)];
            fds.extend(children.iter().map(|c| PollFd::from_borrowed_fd(c.pidfd(), PollFlags::IN)));
            if poll(&mut fds, None).is_err() {
                // Not expected; do not spin on it.
                std::thread::sleep(crate::sync::WAIT_SLICE);
            }
            wakeup.drain();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::os::fd::AsFd;

    use super::*;

    /// A child whose waits return the given outcomes in turn.
    struct Mock {
        outcomes: Vec<io::Result<Option<i32>>>,
        waits: Cell<usize>,
        fd: std::fs::File,
    }

    fn mock(outcomes: Vec<io::Result<Option<i32>>>) -> Mock {
        Mock { outcomes, waits: Cell::new(0), fd: std::fs::File::open("/dev/null").unwrap() }
    }

    impl Wait for &Mock {
        fn try_wait(&self) -> io::Result<Option<i32>> {
            let n = self.waits.get();
            self.waits.set(n + 1);
            match &self.outcomes[n.min(self.outcomes.len() - 1)] {
                Ok(s) => Ok(*s),
                Err(e) => Err(io::Error::from(e.kind())),
            }
        }
        fn pidfd(&self) -> BorrowedFd<'_> {
            self.fd.as_fd()
        }
    }

    #[test]
    fn a_running_child_is_kept_until_it_ends_then_dropped() {
        let running_then_ended = mock(vec![Ok(None), Ok(None), Ok(Some(0))]);
        let mut orphans = Orphans::new();
        orphans.push(&running_then_ended);
        orphans.reap();
        assert!(!orphans.is_empty());
        orphans.reap();
        assert!(!orphans.is_empty());
        orphans.reap();
        assert!(orphans.is_empty());
        assert_eq!(running_then_ended.waits.get(), 3);
    }

    #[test]
    fn only_the_ended_and_the_unwaitable_are_dropped() {
        let ended = mock(vec![Ok(Some(-9))]);
        let running = mock(vec![Ok(None)]);
        let reaped_elsewhere = mock(vec![Err(io::ErrorKind::NotFound.into())]);
        let mut orphans = Orphans::new();
        for c in [&ended, &running, &reaped_elsewhere] {
            orphans.push(c);
        }
        orphans.reap();
        assert_eq!(orphans.children().len(), 1);
        assert!(std::ptr::eq(orphans.children()[0], &running));
        assert_eq!((ended.waits.get(), running.waits.get(), reaped_elsewhere.waits.get()), (1, 1, 1));
    }
}
