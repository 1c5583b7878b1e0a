use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::error::{LockError, SyncError};
use super::lock::{MUTEX_AT, Wait, acquire_with, lock_raw};
use super::{left, region_handle_serde};
use crate::region::{Kind, Region};
use crate::sys::{self, mutex};

const SEQ_AT: usize = 128;

/// A condition variable shared between processes, with its own lock, like Python's
/// `multiprocessing.Condition()`.
///
/// [`acquire`](Condition::acquire) the lock to get a [`ConditionGuard`]; on it,
/// [`wait`](ConditionGuard::wait) releases the lock until another process
/// [`notify`](ConditionGuard::notify)s, then takes it back. Waits may wake spuriously:
/// check your condition in a loop, or use [`wait_for`](ConditionGuard::wait_for).
///
/// ```
/// use multiproc::{Condition, Process, SyncError, Value};
///
/// fn producer((cond, ready): (Condition, Value<u32>)) {
///     let mut g = cond.acquire().unwrap();
///     ready.set(1).unwrap();
///     g.notify_all();
/// }
///
/// multiproc::init();
/// let cond = Condition::new()?;
/// let ready = Value::new(0u32)?;
/// // A guard borrows its lock: turn the error into an owned one before `?`.
/// let mut g = cond.acquire().map_err(SyncError::from)?;
/// let mut p = Process::new(producer, (cond.clone(), ready.clone()));
/// p.start()?;
/// g.wait_for(|| ready.get().unwrap() == 1, None)?;
/// drop(g);
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    pub(crate) region: Arc<Region>,
}

region_handle_serde!(Condition, Kind::Condition);

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Condition")
    }
}

impl Condition {
    /// A new condition with its own (robust, non-recursive) lock.
    ///
    /// ```
    /// multiproc::init();
    /// let c = multiproc::Condition::new()?;
    /// drop(c.acquire().map_err(multiproc::SyncError::from)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Result<Condition, SyncError> {
        let region = Region::create(Kind::Condition, 0, SEQ_AT + 4)?;
        mutex::init(region.map(), MUTEX_AT, false)?;
        Ok(Condition { region: Arc::new(region) })
    }

    fn seq(&self) -> &AtomicU32 {
        self.region.map().atomic_u32(SEQ_AT)
    }

    fn acquire_wait(&self, wait: Wait) -> Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
        acquire_with(self.region.map(), MUTEX_AT, wait, || ConditionGuard { cond: self, _not_send: PhantomData })
    }

    /// Takes the condition's lock.
    ///
    /// ```
    /// multiproc::init();
    /// let c = multiproc::Condition::new()?;
    /// let mut held = c.acquire().map_err(multiproc::SyncError::from)?;
    /// held.notify_all();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire(&self) -> Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
        self.acquire_wait(Wait::Forever)
    }

    /// Takes the lock, or fails with [`LockError::TimedOut`] after `timeout`.
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let c = multiproc::Condition::new()?;
    /// let held = c.acquire_timeout(Duration::from_secs(1)).map_err(multiproc::SyncError::from)?;
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
        self.acquire_wait(Wait::For(timeout))
    }
}

/// The held lock of a [`Condition`]: wait and notify through it. Releases on drop.
///
/// ```
/// use multiproc::{Condition, SyncError};
/// use std::time::Duration;
///
/// multiproc::init();
/// let cond = Condition::new()?;
/// let mut held = cond.acquire().map_err(SyncError::from)?;
/// held.notify_all(); // nobody waits: nothing happens
/// // Nobody notifies either: the wait ends with its timeout, the lock held again.
/// assert!(!held.wait_timeout(Duration::from_millis(10))?);
/// drop(held);
/// # Ok::<(), SyncError>(())
/// ```
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConditionGuard")
    }
}

impl ConditionGuard<'_> {
    /// Releases the lock, sleeps until notified (or `deadline`), takes the lock back.
    /// `Ok(true)` if notified, `Ok(false)` on timeout.
    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<bool, SyncError> {
        let map = self.cond.region.map();
        let seq = self.cond.seq();
        let seen = seq.load(Ordering::SeqCst);
        mutex::unlock(map, MUTEX_AT)?;
        let mut notified = true;
        loop {
            match left(deadline) {
                Ok(l) => {
                    if let Err(e) = sys::futex::wait(seq, seen, l) {
                        relock(map)?;
                        return Err(e.into());
                    }
                }
                Err(_) => {
                    notified = false;
                    break;
                }
            }
            if seq.load(Ordering::SeqCst) != seen {
                break;
            }
        }
        relock(map)?;
        Ok(notified)
    }

    /// Waits until notified. The lock is released while waiting and held again on return.
    pub fn wait(&mut self) -> Result<(), SyncError> {
        self.wait_until(None).map(|_| ())
    }

    /// Waits until notified or `timeout` passes; returns `false` on timeout.
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let c = multiproc::Condition::new()?;
    /// let mut held = c.acquire().map_err(multiproc::SyncError::from)?;
    /// assert!(!held.wait_timeout(Duration::from_millis(10))?); // not notified
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool, SyncError> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Waits until `predicate()` is true (checked under the lock), at most `timeout`
    /// (`None`: forever); returns the predicate's last value.
    pub fn wait_for(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, SyncError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if predicate() {
                return Ok(true);
            }
            if !self.wait_until(deadline)? && deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(predicate());
            }
        }
    }

    /// Wakes up to `n` waiters.
    ///
    /// ```
    /// multiproc::init();
    /// let c = multiproc::Condition::new()?;
    /// let mut held = c.acquire().map_err(multiproc::SyncError::from)?;
    /// held.notify(1); // wakes at most one waiter
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn notify(&mut self, n: u32) {
        let seq = self.cond.seq();
        seq.fetch_add(1, Ordering::SeqCst);
        sys::futex::wake(seq, n);
    }

    /// Wakes every waiter.
    ///
    /// ```
    /// multiproc::init();
    /// let c = multiproc::Condition::new()?;
    /// let mut held = c.acquire().map_err(multiproc::SyncError::from)?;
    /// held.notify_all();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn notify_all(&mut self) {
        let seq = self.cond.seq();
        seq.fetch_add(1, Ordering::SeqCst);
        sys::futex::wake_all(seq);
    }
}

/// Takes the lock back after a wait; a dead owner in between is reported.
fn relock(map: &crate::sys::shm::Mapping) -> Result<(), SyncError> {
    match lock_raw(map, MUTEX_AT, Wait::Forever) {
        Ok(false) => Ok(()),
        Ok(true) => Err(SyncError::OwnerDied),
        Err(e) => Err(e.into()),
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        let _ = mutex::unlock(self.cond.region.map(), MUTEX_AT);
    }
}
