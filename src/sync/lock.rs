use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::error::{LockError, SyncError};
use super::region_handle_serde;
use crate::region::{HEADER, Kind, Region};
use crate::sys::mutex::{self, Acquired, LockFailure};
use crate::sys::shm::Mapping;

/// Where the mutex sits in a lock's region.
pub(crate) const MUTEX_AT: usize = HEADER;

/// How to wait for a robust mutex.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    Forever,
    For(Duration),
    Not,
}

/// Locks the robust mutex at `offset` of `map`; `Ok(true)` if its owner had died.
pub(crate) fn lock_raw(map: &Mapping, offset: usize, wait: Wait) -> Result<bool, LockError<()>> {
    let r = match wait {
        Wait::Forever => mutex::lock(map, offset, None),
        Wait::For(d) => mutex::lock(map, offset, Some(d)),
        Wait::Not => mutex::try_lock(map, offset),
    };
    match r {
        Ok(Acquired::Clean) => Ok(false),
        Ok(Acquired::OwnerDied) => Ok(true),
        Err(LockFailure::TimedOut) => Err(LockError::TimedOut),
        Err(LockFailure::WouldDeadlock) => Err(LockError::WouldDeadlock),
        Err(LockFailure::Io(e)) => Err(LockError::Io(e)),
    }
}

/// Locks and wraps the outcome in a guard made by `guard`.
pub(crate) fn acquire_with<G>(
    map: &Mapping,
    offset: usize,
    wait: Wait,
    guard: impl FnOnce() -> G,
) -> Result<G, LockError<G>> {
    match lock_raw(map, offset, wait) {
        Ok(false) => Ok(guard()),
        Ok(true) => Err(LockError::OwnerDied(guard())),
        Err(e) => Err(e.map(|()| unreachable!("only OwnerDied carries a guard"))),
    }
}

/// A lock shared between processes, like Python's `multiprocessing.Lock`.
///
/// [`acquire`](Lock::acquire) returns a guard that releases the lock when dropped.
/// A process that dies while holding the lock does not deadlock the others: the next
/// one to acquire it gets [`LockError::OwnerDied`] holding the guard (see
/// [`LockError::recover`]). The lock is not recursive: acquiring it again from the
/// thread holding it is [`LockError::WouldDeadlock`] (use [`RLock`] for that).
///
/// Clones are the same lock; so is a `Lock` received by another process (as a
/// [`Process`](crate::Process) argument or in a message).
///
/// ```
/// use multiproc::{Lock, Process};
///
/// fn child(lock: Lock) {
///     let _held = lock.acquire().expect("lock");
///     println!("child {} has the lock", std::process::id());
/// }
///
/// multiproc::init();
/// let lock = Lock::new()?;
/// let mut p = Process::new(child, lock.clone());
/// p.start()?;
/// p.join()?;
/// assert!(lock.try_acquire().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    pub(crate) region: Arc<Region>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Lock")
    }
}

region_handle_serde!(Lock, Kind::Lock);

impl Lock {
    /// A new, unlocked lock.
    ///
    /// ```
    /// multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// assert!(!lock.locked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Result<Lock, SyncError> {
        let region = Region::create(Kind::Lock, 0, MUTEX_AT + mutex::MUTEX_SIZE)?;
        mutex::init(region.map(), MUTEX_AT, false)?;
        Ok(Lock { region: Arc::new(region) })
    }

    fn acquire_wait(&self, wait: Wait) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        acquire_with(self.region.map(), MUTEX_AT, wait, || LockGuard { lock: self, _not_send: PhantomData })
    }

    /// Waits for the lock and holds it until the guard drops.
    ///
    /// ```
    /// multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// let held = lock.acquire().map_err(multiproc::SyncError::from)?;
    /// assert!(lock.locked());
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire_wait(Wait::Forever)
    }

    /// As [`acquire`](Lock::acquire), giving up with [`LockError::TimedOut`] after `timeout`.
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let lock = multiproc::Lock::new()?;
    /// let held = lock.acquire_timeout(Duration::from_secs(1)).map_err(multiproc::SyncError::from)?;
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire_wait(Wait::For(timeout))
    }

    /// Takes the lock only if it is free ([`LockError::TimedOut`] otherwise).
    ///
    /// ```
    /// multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// let held = lock.try_acquire().map_err(multiproc::SyncError::from)?;
    /// assert!(lock.locked());
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_acquire(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire_wait(Wait::Not)
    }

    /// Whether any thread of any process holds the lock now (Python's `Lock.locked()`),
    /// without taking it. A lock whose holder died reads as free: the next
    /// [`acquire`](Lock::acquire) takes it, with [`LockError::OwnerDied`].
    ///
    /// ```
    /// multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// assert!(!lock.locked());
    /// let held = lock.acquire().map_err(multiproc::SyncError::from)?;
    /// assert!(lock.locked());
    /// drop(held);
    /// assert!(!lock.locked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn locked(&self) -> bool {
        mutex::is_locked(self.region.map(), MUTEX_AT)
    }
}

/// Proof that a [`Lock`] is held; releases it on drop. Stays on the thread that locked.
///
/// ```
/// use multiproc::{Lock, SyncError};
///
/// multiproc::init();
/// let lock = Lock::new()?;
/// {
///     let _held = lock.acquire().map_err(SyncError::from)?;
///     assert!(lock.locked());
/// }
/// assert!(!lock.locked()); // released when the guard dropped
/// # Ok::<(), SyncError>(())
/// ```
pub struct LockGuard<'a> {
    lock: &'a Lock,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = mutex::unlock(self.lock.region.map(), MUTEX_AT);
    }
}

/// A recursive lock shared between processes, like Python's `multiprocessing.RLock`:
/// the thread holding it may acquire it again; it is free once every guard has dropped.
///
/// Owner death is reported as for [`Lock`].
///
/// ```
/// multiproc::init();
/// let r = multiproc::RLock::new()?;
/// let outer = r.acquire().map_err(multiproc::SyncError::from)?;
/// let inner = r.acquire().map_err(multiproc::SyncError::from)?; // same thread: fine
/// drop(inner);
/// drop(outer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RLock {
    pub(crate) region: Arc<Region>,
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RLock")
    }
}

region_handle_serde!(RLock, Kind::RLock);

impl RLock {
    /// A new, unlocked recursive lock.
    ///
    /// ```
    /// multiproc::init();
    /// let lock = multiproc::RLock::new()?;
    /// assert!(!lock.locked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Result<RLock, SyncError> {
        let region = Region::create(Kind::RLock, 0, MUTEX_AT + mutex::MUTEX_SIZE)?;
        mutex::init(region.map(), MUTEX_AT, true)?;
        Ok(RLock { region: Arc::new(region) })
    }

    fn acquire_wait(&self, wait: Wait) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        acquire_with(self.region.map(), MUTEX_AT, wait, || RLockGuard { lock: self, _not_send: PhantomData })
    }

    /// Waits for the lock (at once if this thread holds it); released when the guard drops.
    ///
    /// ```
    /// multiproc::init();
    /// let lock = multiproc::RLock::new()?;
    /// let held = lock.acquire().map_err(multiproc::SyncError::from)?;
    /// assert!(lock.locked());
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire(&self) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.acquire_wait(Wait::Forever)
    }

    /// As [`acquire`](RLock::acquire), giving up with [`LockError::TimedOut`] after `timeout`.
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let lock = multiproc::RLock::new()?;
    /// let held = lock.acquire_timeout(Duration::from_secs(1)).map_err(multiproc::SyncError::from)?;
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.acquire_wait(Wait::For(timeout))
    }

    /// Takes the lock only if it is free or already this thread's.
    ///
    /// ```
    /// multiproc::init();
    /// let lock = multiproc::RLock::new()?;
    /// let outer = lock.try_acquire().map_err(multiproc::SyncError::from)?;
    /// let inner = lock.try_acquire().map_err(multiproc::SyncError::from)?; // recursive
    /// drop((inner, outer));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_acquire(&self) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.acquire_wait(Wait::Not)
    }

    /// Whether any thread of any process, this one included, holds the lock now (Python
    /// 3.14's `RLock.locked()`), without taking it. As for [`Lock::locked`], a lock whose
    /// holder died reads as free.
    ///
    /// ```
    /// multiproc::init();
    /// let r = multiproc::RLock::new()?;
    /// let held = r.acquire().map_err(multiproc::SyncError::from)?;
    /// assert!(r.locked());
    /// drop(held);
    /// assert!(!r.locked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn locked(&self) -> bool {
        mutex::is_locked(self.region.map(), MUTEX_AT)
    }
}

/// Proof that an [`RLock`] is held (once more); releases one level on drop.
///
/// ```
/// use multiproc::{RLock, SyncError};
///
/// multiproc::init();
/// let lock = RLock::new()?;
/// let outer = lock.acquire().map_err(SyncError::from)?;
/// let inner = lock.acquire().map_err(SyncError::from)?; // the same thread may take it again
/// drop(inner);
/// assert!(lock.locked()); // still held by `outer`
/// drop(outer);
/// assert!(!lock.locked());
/// # Ok::<(), SyncError>(())
/// ```
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RLockGuard")
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = mutex::unlock(self.lock.region.map(), MUTEX_AT);
    }
}
