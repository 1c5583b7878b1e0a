//! Synchronization objects living in the server: locks, semaphores, events, conditions
//! and barriers (Python's manager `Lock`, `RLock`, `Semaphore`, `Event`, `Condition`,
//! `Barrier`).
//!
//! A lock is held by a thread of a process. When a process dies holding a lock or a
//! condition, the server releases it (Python's manager would keep it locked forever).

use std::time::{Duration, Instant};

use super::client::{self, unit};
use super::error::ManagerError;
use super::handle::Handle;
use super::protocol::{Kind, Wait, sync as op};

/// This thread's id in lock ownership: unique in this process (the server adds the
/// process's session).
fn thread_token() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    thread_local!(static TOKEN: u64 = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    TOKEN.with(|t| *t)
}

fn acquire(h: &Handle, wait: Option<Duration>) -> Result<bool, ManagerError> {
    h.call(op::L_ACQUIRE, |w| w.u64(h.id).u64(thread_token()).u64(Wait::micros(wait)).done(), client::value::<bool>)
}

fn release(h: &Handle) -> Result<(), ManagerError> {
    h.call(op::L_RELEASE, |w| w.u64(h.id).u64(thread_token()).done(), unit)
}

/// Holds a lock (or a semaphore permit, or a condition's lock) until dropped.
///
/// Made by `lock()` on [`LockProxy`], [`RLockProxy`], [`SemaphoreProxy`] and
/// [`ConditionProxy`]. Dropping it releases; a release that fails (the server is gone)
/// is ignored then — call [`unlock`](Self::unlock) to see it.
///
/// ```
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// let lock = manager.lock()?;
/// let held = lock.lock()?; // held in the server for this process
/// assert!(!lock.try_acquire()?);
/// held.unlock()?; // or drop it; `unlock` reports a failed release
/// assert!(lock.try_acquire()?);
/// lock.release()?;
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    h: &'a Handle,
    held: bool,
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockGuard({:?})", self.h)
    }
}

impl LockGuard<'_> {
    /// Releases now, reporting an error.
    pub fn unlock(mut self) -> Result<(), ManagerError> {
        self.held = false;
        release(self.h)
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if self.held {
            let _ = release(self.h);
        }
    }
}

/// The acquire/release methods every lock-like proxy has.
macro_rules! acquirer {
    ($what:literal) => {
        /// Acquires, waiting as long as it takes.
        pub fn acquire(&self) -> Result<(), ManagerError> {
            acquire(&self.h, None).map(drop)
        }

        /// Acquires if that can be done now; returns whether it was.
        pub fn try_acquire(&self) -> Result<bool, ManagerError> {
            acquire(&self.h, Some(Duration::ZERO))
        }

        /// Acquires, waiting at most `timeout`; returns whether it was.
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
            acquire(&self.h, Some(timeout))
        }

        #[doc = concat!("Releases ", $what, ".")]
        pub fn release(&self) -> Result<(), ManagerError> {
            release(&self.h)
        }

        /// Acquires and returns a guard that releases when dropped.
        pub fn lock(&self) -> Result<LockGuard<'_>, ManagerError> {
            self.acquire()?;
            Ok(LockGuard { h: &self.h, held: true })
        }
    };
}

proxy! {
    /// A proxy of a lock living in a manager's server; made by
    /// [`Manager::lock`](super::Manager::lock). Not reentrant: acquiring it twice
    /// waits forever, as Python's does. Any thread or process may release it.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let lock = manager.lock()?;
    /// {
    ///     let _held = lock.lock()?;
    ///     assert!(!lock.try_acquire()?);
    /// }
    /// assert!(lock.try_acquire()?);
    /// lock.release()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    LockProxy[], Kind::Lock, "lock".to_string()
}

impl LockProxy {
    acquirer!("the lock");
}

proxy! {
    /// A proxy of a reentrant lock living in a manager's server; made by
    /// [`Manager::rlock`](super::Manager::rlock). The thread holding it may acquire it
    /// again, and must release it as many times; only that thread may release it.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let r = manager.rlock()?;
    /// r.acquire()?;
    /// r.acquire()?;
    /// r.release()?;
    /// r.release()?;
    /// assert!(r.release().is_err()); // not held any more
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    RLockProxy[], Kind::RLock, "rlock".to_string()
}

impl RLockProxy {
    acquirer!("the lock (once)");
}

proxy! {
    /// A proxy of a semaphore living in a manager's server; made by
    /// [`Manager::semaphore`](super::Manager::semaphore) or
    /// [`Manager::bounded_semaphore`](super::Manager::bounded_semaphore).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.bounded_semaphore(2)?;
    /// s.acquire()?;
    /// s.acquire()?;
    /// assert!(!s.try_acquire()?);
    /// s.release()?;
    /// assert_eq!(s.value()?, 1);
    /// s.release()?;
    /// assert!(s.release().is_err()); // above its bound
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    SemaphoreProxy[], Kind::Semaphore, "semaphore".to_string()
}

impl SemaphoreProxy {
    acquirer!("one permit");

    /// The number of permits available now.
    pub fn value(&self) -> Result<usize, ManagerError> {
        self.h.call(op::SEM_VALUE, |w| w.u64(self.h.id).done(), client::value::<u64>).map(|n| n as usize)
    }
}

proxy! {
    /// A proxy of an event living in a manager's server; made by
    /// [`Manager::event`](super::Manager::event).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let e = manager.event()?;
    /// assert!(!e.wait_timeout(std::time::Duration::from_millis(1))?);
    /// e.set()?;
    /// e.wait()?;
    /// assert!(e.is_set()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    EventProxy[], Kind::Event, "event".to_string()
}

impl EventProxy {
    fn call(&self, op: u8) -> Result<(), ManagerError> {
        self.h.call(op, |w| w.u64(self.h.id).done(), unit)
    }

    /// Sets the flag, waking every waiter.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let e = manager.event()?;
    /// e.set()?;
    /// assert!(e.is_set()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self) -> Result<(), ManagerError> {
        self.call(op::E_SET)
    }

    /// Clears the flag.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let e = manager.event()?;
    /// e.set()?;
    /// e.clear()?;
    /// assert!(!e.is_set()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.call(op::E_CLEAR)
    }

    /// Whether the flag is set.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let e = manager.event()?;
    /// assert!(!e.is_set()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_set(&self) -> Result<bool, ManagerError> {
        self.h.call(op::E_IS_SET, |w| w.u64(self.h.id).done(), client::value::<bool>)
    }

    /// Waits until the flag is set.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let e = manager.event()?;
    /// e.set()?;
    /// e.wait()?; // returns at once
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&self) -> Result<(), ManagerError> {
        self.wait_for(None).map(drop)
    }

    /// Waits at most `timeout` for the flag; returns whether it is set.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let e = manager.event()?;
    /// use std::time::Duration;
    /// assert!(!e.wait_timeout(Duration::from_millis(10))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.wait_for(Some(timeout))
    }

    fn wait_for(&self, wait: Option<Duration>) -> Result<bool, ManagerError> {
        self.h.call(op::E_WAIT, |w| w.u64(self.h.id).u64(Wait::micros(wait)).done(), client::value::<bool>)
    }
}

proxy! {
    /// A proxy of a condition variable living in a manager's server, with its own
    /// reentrant lock; made by [`Manager::condition`](super::Manager::condition).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let c = manager.condition()?;
    /// let _held = c.lock()?;
    /// c.notify_all()?; // nobody waits: nothing happens
    /// assert!(!c.wait_timeout(std::time::Duration::from_millis(1))?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    ConditionProxy[], Kind::Condition, "condition".to_string()
}

impl ConditionProxy {
    acquirer!("the condition's lock (once)");

    fn wait_raw(&self, wait: Option<Duration>) -> Result<bool, ManagerError> {
        let h = &self.h;
        h.call(op::C_WAIT, |w| w.u64(h.id).u64(thread_token()).u64(Wait::micros(wait)).done(), client::value::<bool>)
    }

    /// Releases the lock, waits for a notification, and takes the lock back. The
    /// calling thread must hold the lock.
    pub fn wait(&self) -> Result<(), ManagerError> {
        self.wait_raw(None).map(drop)
    }

    /// As [`wait`](Self::wait), for at most `timeout`; returns whether it was notified.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.wait_raw(Some(timeout))
    }

    /// Waits until `predicate()` holds (checked with the lock held), for at most
    /// `timeout` if given; returns the predicate's last result.
    pub fn wait_while_not(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, ManagerError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if predicate() {
                return Ok(true);
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(false),
                },
            };
            self.wait_raw(left)?;
        }
    }

    /// Wakes up to `n` waiters. The calling thread must hold the lock.
    pub fn notify(&self, n: usize) -> Result<(), ManagerError> {
        self.notify_raw(n as u64)
    }

    /// Wakes every waiter. The calling thread must hold the lock.
    pub fn notify_all(&self) -> Result<(), ManagerError> {
        self.notify_raw(u64::MAX)
    }

    fn notify_raw(&self, n: u64) -> Result<(), ManagerError> {
        self.h.call(op::C_NOTIFY, |w| w.u64(self.h.id).u64(thread_token()).u64(n).done(), unit)
    }
}

proxy! {
    /// A proxy of a barrier living in a manager's server; made by
    /// [`Manager::barrier`](super::Manager::barrier). Each `wait` returns a distinct
    /// index in `0..parties`; a timeout, [`abort`](Self::abort) or
    /// [`reset`](Self::reset) breaks it for the waiters ([`ManagerError::BrokenBarrier`]).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let b = manager.barrier(1)?;
    /// assert_eq!(b.wait()?, 0); // one party: passes at once
    /// b.abort()?;
    /// assert!(b.is_broken()?);
    /// assert!(matches!(b.wait(), Err(multiproc::ManagerError::BrokenBarrier)));
    /// b.reset()?;
    /// assert_eq!(b.wait()?, 0);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    BarrierProxy[], Kind::Barrier, "barrier".to_string()
}

impl BarrierProxy {
    fn wait_raw(&self, wait: Option<Duration>) -> Result<usize, ManagerError> {
        self.h
            .call(op::B_WAIT, |w| w.u64(self.h.id).u64(Wait::micros(wait)).done(), client::value::<u64>)
            .map(|i| i as usize)
    }

    /// Waits until `parties` callers wait; returns this caller's index.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let b = manager.barrier(1)?;
    /// assert_eq!(b.wait()?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&self) -> Result<usize, ManagerError> {
        self.wait_raw(None)
    }

    /// As [`wait`](Self::wait), for at most `timeout`; a timeout breaks the barrier.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// use std::time::Duration;
    /// let b = manager.barrier(2)?;
    /// assert!(b.wait_timeout(Duration::from_millis(10)).is_err()); // the other never came
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, ManagerError> {
        self.wait_raw(Some(timeout))
    }

    /// Breaks the barrier: current and future waiters fail until [`reset`](Self::reset).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let b = manager.barrier(2)?;
    /// b.abort()?;
    /// assert!(b.is_broken()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn abort(&self) -> Result<(), ManagerError> {
        self.h.call(op::B_ABORT, |w| w.u64(self.h.id).done(), unit)
    }

    /// Returns the barrier to its initial state; current waiters fail.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let b = manager.barrier(2)?;
    /// b.abort()?;
    /// b.reset()?;
    /// assert!(!b.is_broken()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset(&self) -> Result<(), ManagerError> {
        self.h.call(op::B_RESET, |w| w.u64(self.h.id).done(), unit)
    }

    fn state(&self) -> Result<(u64, u64, bool), ManagerError> {
        self.h.call(op::B_STATE, |w| w.u64(self.h.id).done(), client::value::<(u64, u64, bool)>)
    }

    /// How many waiters it takes to pass.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// assert_eq!(manager.barrier(3)?.parties()?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parties(&self) -> Result<usize, ManagerError> {
        Ok(self.state()?.0 as usize)
    }

    /// How many are waiting now.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// assert_eq!(manager.barrier(3)?.n_waiting()?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn n_waiting(&self) -> Result<usize, ManagerError> {
        Ok(self.state()?.1 as usize)
    }

    /// Whether the barrier is broken.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let b = manager.barrier(1)?;
    /// assert!(!b.is_broken()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_broken(&self) -> Result<bool, ManagerError> {
        Ok(self.state()?.2)
    }
}
