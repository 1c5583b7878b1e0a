use std::fmt;
use std::io;

/// Why a lock was not acquired — or was, from a process that died holding it.
///
/// [`OwnerDied`](LockError::OwnerDied) carries the guard: the caller *holds* the lock
/// and may repair what it protects (the dead owner may have left it half-updated);
/// [`recover`](LockError::recover) turns that case into `Ok`.
///
/// ```
/// use multiproc::{Lock, LockError, SyncError};
///
/// multiproc::init();
/// let lock = Lock::new()?;
/// let held = match lock.acquire() {
///     Ok(held) => held,
///     Err(LockError::OwnerDied(held)) => {
///         // A process died holding it: we hold it now; repair what it guards here.
///         held
///     }
///     Err(e) => return Err(e.into()),
/// };
/// // This thread holds it already: a second acquire would never return, so it fails.
/// assert!(matches!(lock.acquire(), Err(LockError::WouldDeadlock)));
/// drop(held);
/// # Ok::<(), SyncError>(())
/// ```
pub enum LockError<G> {
    /// The previous owner died while holding the lock. You hold it now.
    OwnerDied(G),
    /// The timeout passed (or, for `try_acquire`, the lock is held by someone else).
    TimedOut,
    /// This thread already holds this non-recursive lock: acquiring it would never return.
    WouldDeadlock,
    /// The operating system refused (an internal error, reported rather than hidden).
    Io(io::Error),
}

impl<G> LockError<G> {
    /// The guard if the lock was obtained from a dead owner: `Ok(guard)`; other errors stay.
    ///
    /// ```
    /// multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// let guard = lock.acquire().or_else(multiproc::LockError::recover)?;
    /// drop(guard);
    /// # Ok::<(), multiproc::SyncError>(())
    /// ```
    pub fn recover(self) -> Result<G, LockError<G>> {
        match self {
            LockError::OwnerDied(g) => Ok(g),
            other => Err(other),
        }
    }

    /// Whether this reports a dead owner (and so holds the lock).
    ///
    /// ```
    /// multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// match lock.acquire() {
    ///     Err(e) if e.is_owner_died() => println!("repair what the dead owner left"),
    ///     other => drop(other),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_owner_died(&self) -> bool {
        matches!(self, LockError::OwnerDied(_))
    }

    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::TimedOut => LockError::TimedOut,
            LockError::WouldDeadlock => LockError::WouldDeadlock,
            LockError::Io(e) => LockError::Io(e),
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::TimedOut => f.write_str("TimedOut"),
            LockError::WouldDeadlock => f.write_str("WouldDeadlock"),
            LockError::Io(e) => f.debug_tuple("Io").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str(
                "a process died while holding the lock; it is now held by the caller, and the data it \
                 protects may be half-updated",
            ),
            LockError::TimedOut => f.write_str("timed out waiting for the lock"),
            LockError::WouldDeadlock => f.write_str("this thread already holds the lock (it is not recursive)"),
            LockError::Io(e) => write!(f, "lock failed: {e}"),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// Why a synchronization call failed.
///
/// ```
/// use multiproc::{SyncError, Value};
///
/// /// Adds one under the value's lock; a lock error becomes a `SyncError` through `?`.
/// fn bump(v: &Value<u64>) -> Result<u64, SyncError> {
///     let mut held = v.lock()?;
///     *held += 1;
///     Ok(*held)
/// }
///
/// multiproc::init();
/// let v = Value::new(0)?;
/// assert_eq!(bump(&v)?, 1);
/// match bump(&v) {
///     Ok(n) => assert_eq!(n, 2),
///     Err(SyncError::OwnerDied) => println!("a process died holding the lock"),
///     Err(e) => return Err(e),
/// }
/// # Ok::<(), SyncError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The timeout passed first.
    #[error("timed out")]
    TimedOut,
    /// A process died holding the lock involved; the operation's state may be inconsistent.
    #[error("a process died while holding the lock")]
    OwnerDied,
    /// This thread already holds the (non-recursive) lock.
    #[error("this thread already holds the lock (it is not recursive)")]
    WouldDeadlock,
    /// A [`Barrier`](crate::Barrier) was broken (by a timeout, `abort` or `reset`).
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// A [`BoundedSemaphore`](crate::BoundedSemaphore) was released more often than acquired.
    #[error("semaphore released too many times (its bound is {bound})")]
    OverReleased {
        /// The semaphore's bound.
        bound: u32,
    },
    /// A bad argument, such as a barrier for zero parties.
    #[error("{0}")]
    InvalidArgument(&'static str),
    /// The operating system refused.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl<G> From<LockError<G>> for SyncError {
    fn from(e: LockError<G>) -> SyncError {
        match e {
            LockError::OwnerDied(_) => SyncError::OwnerDied,
            LockError::TimedOut => SyncError::TimedOut,
            LockError::WouldDeadlock => SyncError::WouldDeadlock,
            LockError::Io(e) => SyncError::Io(e),
        }
    }
}
