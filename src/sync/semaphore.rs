use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::error::SyncError;
use super::{region_handle_serde, sleep_on};
use crate::region::{HEADER, Kind, Region};
use crate::sys;

const VALUE_AT: usize = HEADER;
const WAITERS_AT: usize = HEADER + 4;
const BOUND_AT: usize = HEADER + 8;

/// A counting semaphore shared between processes, like Python's
/// `multiprocessing.Semaphore`: [`acquire`](Semaphore::acquire) takes one unit, waiting
/// while there is none; [`release`](Semaphore::release) gives one back. Any process or
/// thread may release.
///
/// ```
/// multiproc::init();
/// let s = multiproc::Semaphore::new(2)?;
/// s.acquire()?;
/// s.acquire()?;
/// assert!(!s.try_acquire());
/// s.release()?;
/// assert_eq!(s.value(), 1);
/// # Ok::<(), multiproc::SyncError>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    pub(crate) region: Arc<Region>,
}

region_handle_serde!(Semaphore, Kind::Semaphore);

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("value", &self.value()).finish()
    }
}

impl Semaphore {
    /// A semaphore holding `value` units.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::Semaphore::new(2)?;
    /// assert_eq!(s.value(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(value: u32) -> Result<Semaphore, SyncError> {
        Semaphore::with_bound(value, 0)
    }

    fn with_bound(value: u32, bound: u32) -> Result<Semaphore, SyncError> {
        let region = Region::create(Kind::Semaphore, 0, BOUND_AT + 4)?;
        region.map().atomic_u32(VALUE_AT).store(value, Ordering::SeqCst);
        region.map().atomic_u32(BOUND_AT).store(bound, Ordering::SeqCst);
        Ok(Semaphore { region: Arc::new(region) })
    }

    fn value_word(&self) -> &AtomicU32 {
        self.region.map().atomic_u32(VALUE_AT)
    }

    /// The units available now (Python's `get_value`).
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::Semaphore::new(3)?;
    /// assert!(s.try_acquire());
    /// assert_eq!(s.value(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn value(&self) -> u32 {
        self.value_word().load(Ordering::SeqCst)
    }

    /// Takes one unit if one is available now; returns whether it did.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::Semaphore::new(1)?;
    /// assert!(s.try_acquire());
    /// assert!(!s.try_acquire());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_acquire(&self) -> bool {
        let v = self.value_word();
        let mut cur = v.load(Ordering::SeqCst);
        while cur > 0 {
            match v.compare_exchange_weak(cur, cur - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
        false
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Result<(), SyncError> {
        let waiters = self.region.map().atomic_u32(WAITERS_AT);
        loop {
            if self.try_acquire() {
                return Ok(());
            }
            waiters.fetch_add(1, Ordering::SeqCst);
            let r = sleep_on(self.value_word(), 0, deadline);
            waiters.fetch_sub(1, Ordering::SeqCst);
            r?;
        }
    }

    /// Takes one unit, waiting as long as it takes.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::Semaphore::new(1)?;
    /// s.acquire()?;
    /// assert_eq!(s.value(), 0);
    /// s.release()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire(&self) -> Result<(), SyncError> {
        self.acquire_until(None)
    }

    /// Takes one unit, or fails with [`SyncError::TimedOut`] after `timeout`.
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let s = multiproc::Semaphore::new(1)?;
    /// s.acquire_timeout(Duration::from_secs(1))?;
    /// assert!(s.acquire_timeout(Duration::from_millis(10)).is_err()); // none left
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), SyncError> {
        self.acquire_until(Some(Instant::now() + timeout))
    }

    /// Gives one unit back, waking a waiter.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::Semaphore::new(0)?;
    /// s.release()?;
    /// assert_eq!(s.value(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release(&self) -> Result<(), SyncError> {
        let bound = self.region.map().atomic_u32(BOUND_AT).load(Ordering::SeqCst);
        let v = self.value_word();
        if bound == 0 {
            v.fetch_add(1, Ordering::SeqCst);
        } else {
            let mut cur = v.load(Ordering::SeqCst);
            loop {
                if cur >= bound {
                    return Err(SyncError::OverReleased { bound });
                }
                match v.compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
        }
        if self.region.map().atomic_u32(WAITERS_AT).load(Ordering::SeqCst) > 0 {
            sys::futex::wake(v, 1);
        }
        Ok(())
    }
}

/// A [`Semaphore`] that refuses to be released above its initial value, like Python's
/// `multiprocessing.BoundedSemaphore`: an extra release is [`SyncError::OverReleased`].
///
/// ```
/// multiproc::init();
/// let s = multiproc::BoundedSemaphore::new(1)?;
/// s.acquire()?;
/// s.release()?;
/// assert!(matches!(s.release(), Err(multiproc::SyncError::OverReleased { bound: 1 })));
/// # Ok::<(), multiproc::SyncError>(())
/// ```
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct BoundedSemaphore {
    inner: Semaphore,
}

impl BoundedSemaphore {
    /// A semaphore holding `value` units, never more.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::BoundedSemaphore::new(2)?;
    /// assert_eq!(s.value(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(value: u32) -> Result<BoundedSemaphore, SyncError> {
        if value == 0 {
            return Err(SyncError::InvalidArgument("a bounded semaphore needs a bound of at least 1"));
        }
        Ok(BoundedSemaphore { inner: Semaphore::with_bound(value, value)? })
    }

    /// The units available now.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::BoundedSemaphore::new(3)?;
    /// assert!(s.try_acquire());
    /// assert_eq!(s.value(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn value(&self) -> u32 {
        self.inner.value()
    }

    /// Takes one unit if available now.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::BoundedSemaphore::new(1)?;
    /// assert!(s.try_acquire());
    /// assert!(!s.try_acquire());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_acquire(&self) -> bool {
        self.inner.try_acquire()
    }

    /// Takes one unit, waiting as long as it takes.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::BoundedSemaphore::new(1)?;
    /// s.acquire()?;
    /// assert_eq!(s.value(), 0);
    /// s.release()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire(&self) -> Result<(), SyncError> {
        self.inner.acquire()
    }

    /// Takes one unit, or fails with [`SyncError::TimedOut`] after `timeout`.
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let s = multiproc::BoundedSemaphore::new(1)?;
    /// s.acquire_timeout(Duration::from_secs(1))?;
    /// assert!(s.acquire_timeout(Duration::from_millis(10)).is_err()); // none left
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), SyncError> {
        self.inner.acquire_timeout(timeout)
    }

    /// Gives one unit back; [`SyncError::OverReleased`] if that would exceed the bound.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::BoundedSemaphore::new(1)?;
    /// assert!(s.release().is_err()); // above its initial value
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release(&self) -> Result<(), SyncError> {
        self.inner.release()
    }
}
