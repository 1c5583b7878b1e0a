//! The overflow of an unbounded queue: when its ring is full, `put` does not block but
//! parks the encoded message here, and a feeder thread moves parked messages into the
//! ring, in order, as room appears — Python's `Queue` feeder thread, started only when
//! needed. At normal exit the process waits for its parked messages to be delivered
//! (unless `cancel_join_thread` was called), as Python does.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, Weak};

use super::ring::{Patience, Ring, RingError};

/// What the feeder needs of a queue handle's shared state, which lives above this file
/// (in `queue/mod.rs`, whose handles call [`put_or_park`]).
pub(crate) trait Fed: Send + Sync + 'static {
    /// The messages parked on this queue.
    fn backlog(&self) -> &Backlog;
    /// The ring parked messages go into.
    fn ring(&self) -> &Ring;
    /// Whether puts count unfinished tasks (a `JoinableQueue`).
    fn joinable(&self) -> bool;
}

#[derive(Default)]
pub(crate) struct State {
    items: VecDeque<(Vec<u8>, Vec<OwnedFd>)>,
    /// A message taken from `items` that the feeder is putting now.
    in_flight: bool,
    feeding: bool,
    pub(crate) cancelled: bool,
}

#[derive(Default)]
pub(crate) struct Backlog {
    state: Mutex<State>,
    drained: Condvar,
}

impl Backlog {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every parked message is in the queue.
    pub(crate) fn wait_drained(&self) {
        let mut st = self.lock();
        while st.feeding {
            st = self.drained.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Puts `bytes` into the ring if it has room now and nothing is parked; parks it otherwise.
pub(crate) fn put_or_park<S: Fed>(shared: &Arc<S>, bytes: &[u8], mut fds: Vec<OwnedFd>) -> Result<(), RingError> {
    let mut st = shared.backlog().lock();
    if st.items.is_empty() && !st.in_flight {
        match shared.ring().put(bytes, &mut fds, Patience::No) {
            Err(RingError::Full) => {}
            other => return other,
        }
    }
    st.items.push_back((bytes.to_vec(), fds));
    if !st.feeding {
        st.feeding = true;
        let s: Arc<dyn Fed> = shared.clone();
        register_for_exit(&s);
        let started = std::thread::Builder::new().name("multiproc-queue-feeder".into()).spawn(move || feed(s));
        if let Err(e) = started {
            st.feeding = false;
            st.items.pop_back();
            return Err(RingError::Io(e));
        }
    }
    Ok(())
}

fn feed(shared: Arc<dyn Fed>) {
    loop {
        let (bytes, mut fds) = {
            let mut st = shared.backlog().lock();
            match st.items.pop_front() {
                Some(item) => {
                    st.in_flight = true;
                    item
                }
                None => {
                    st.feeding = false;
                    shared.backlog().drained.notify_all();
                    return;
                }
            }
        };
        let r = shared.ring().put(&bytes, &mut fds, Patience::Until(None));
        shared.backlog().lock().in_flight = false;
        if let Err(e) = r {
            if shared.joinable() {
                shared.ring().unfinished().fetch_sub(1, Ordering::SeqCst);
            }
            if !matches!(e, RingError::ShutDown) {
                eprintln!("multiproc: a message parked on a full queue could not be delivered: {e:?}");
            }
        }
    }
}

fn registry() -> MutexGuard<'static, Vec<Weak<dyn Fed>>> {
    static LIVE: Mutex<Vec<Weak<dyn Fed>>> = Mutex::new(Vec::new());
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn register_for_exit(shared: &Arc<dyn Fed>) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| crate::sys::proc::at_exit(flush_at_exit));
    let mut live = registry();
    live.retain(|w| w.strong_count() > 0);
    if !live.iter().any(|w| std::ptr::addr_eq(w.as_ptr(), Arc::as_ptr(shared))) {
        live.push(Arc::downgrade(shared));
    }
}

extern "C" fn flush_at_exit() {
    let live: Vec<Arc<dyn Fed>> = registry().iter().filter_map(Weak::upgrade).collect();
    for shared in live {
        if !shared.backlog().lock().cancelled {
            shared.backlog().wait_drained();
        }
    }
}
