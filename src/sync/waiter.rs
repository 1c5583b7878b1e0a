//! A wait that runs on a thread of its own, so that async code never blocks its executor:
//! the async calls of `Queue`, `Connection` and the manager's queue proxy are built on it.
//!
//! The pattern, in each of those futures' `poll`: try the operation without waiting (a
//! non-blocking `recv`, a `get` that does not wait for the lock, ...); if it cannot
//! complete, [`Waiter::poll_wait`] starts one thread that waits for the condition the
//! operation needs (the socket readable, a message in the ring, ...) without taking
//! anything, and wakes the task when it holds. The task then tries again on its own thread.
//! So nothing is ever taken by the helper thread, and a future dropped mid-wait loses
//! nothing: the thread notices the stop flag within one wait slice (`WAIT_SLICE`) and ends.
//!
//! This is the runtime-agnostic fallback the issue allows: no reactor is needed (a futex
//! or a shared-memory ring has no descriptor a reactor could watch), at the cost of one
//! short-lived thread per wait that actually has to wait. An operation that can complete
//! at once never starts one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// What the waiting thread and the future share.
struct State {
    inner: Mutex<Inner>,
    /// Set when the future is dropped: the thread's wait ends within one slice.
    stop: AtomicBool,
}

#[derive(Default)]
struct Inner {
    fired: bool,
    waker: Option<Waker>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fire(&self) {
        let waker = {
            let mut inner = self.lock();
            inner.fired = true;
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// At most one waiting thread for one future at a time; see the module docs.
#[derive(Default)]
pub(crate) struct Waiter {
    armed: Option<Arc<State>>,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter").field("waiting", &self.armed.is_some()).finish()
    }
}

impl Waiter {
    /// Called after an attempt that could not complete. `Ready(())` when the wait started
    /// earlier has ended (try again, then call this again if that fails too); otherwise
    /// `Pending`, with `cx`'s waker registered and a thread running `wait` (started now if
    /// none runs). `wait(stop)` returns when the operation may complete, or soon after
    /// `stop` is set; it waits in slices so that it notices.
    pub(crate) fn poll_wait(&mut self, cx: &Context<'_>, wait: impl FnOnce(&AtomicBool) + Send + 'static) -> Poll<()> {
        if let Some(st) = &self.armed {
            let mut inner = st.lock();
            if inner.fired {
                drop(inner);
                self.armed = None;
                return Poll::Ready(());
            }
            match &inner.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => inner.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        let st = Arc::new(State {
            inner: Mutex::new(Inner { fired: false, waker: Some(cx.waker().clone()) }),
            stop: AtomicBool::new(false),
        });
        let theirs = st.clone();
        let started = std::thread::Builder::new().name("multiproc-waiter".into()).spawn(move || {
            wait(&theirs.stop);
            theirs.fire();
        });
        if started.is_err() {
            // No thread now (a limit on threads): ask to be polled again, to retry.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.armed = Some(st);
        Poll::Pending
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(st) = &self.armed {
            st.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// Runs `step` (which waits one slice at most and says whether the condition holds) until
/// it holds or `stop` is set.
pub(crate) fn until_stopped(stop: &AtomicBool, mut step: impl FnMut() -> bool) {
    while !stop.load(Ordering::SeqCst) {
        if step() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::task::Wake;

    struct Flag(mpsc::Sender<()>);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            let _ = self.0.send(());
        }
    }

    #[test]
    fn a_wait_wakes_the_task_once_it_ends_and_then_reports_ready() {
        let (tx, rx) = mpsc::channel();
        let waker = Waker::from(Arc::new(Flag(tx)));
        let cx = Context::from_waker(&waker);
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let mut w = Waiter::default();
        assert!(w.poll_wait(&cx, move |_| go_rx.recv().unwrap()).is_pending());
        assert!(w.poll_wait(&cx, |_| unreachable!("one thread per wait")).is_pending());
        go_tx.send(()).unwrap();
        rx.recv().unwrap();
        assert!(w.poll_wait(&cx, |_| unreachable!("fired: no new thread")).is_ready());
    }

    #[test]
    fn dropping_the_waiter_stops_its_thread() {
        let (tx, _rx) = mpsc::channel();
        let waker = Waker::from(Arc::new(Flag(tx)));
        let cx = Context::from_waker(&waker);
        let (done_tx, done_rx) = mpsc::channel();
        let mut w = Waiter::default();
        let poll = w.poll_wait(&cx, move |stop| {
            until_stopped(stop, || {
                std::thread::yield_now();
                false
            });
            done_tx.send(()).unwrap();
        });
        assert!(poll.is_pending());
        drop(w);
        done_rx.recv().unwrap();
    }
}
