use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Guarded, SharedLock, data_at};
use crate::region::{Kind, Region, type_tag};
use crate::sync::{LockError, SyncError};
use crate::sync::{MUTEX_AT, Wait, acquire_with};
use crate::sys::mutex;
use crate::sys::shm::Pod;

/// One plain-old-data value in shared memory, with a lock, like Python's
/// `multiprocessing.Value`.
///
/// [`lock`](Value::lock) gives a guard that derefs to the value, for read-modify-write
/// without races; [`get`](Value::get)/[`set`](Value::set) take the lock for one access.
/// A process that dies holding the lock is reported to the next locker as
/// [`LockError::OwnerDied`]. Clones — and copies received by other processes — are the
/// same value.
///
/// ```
/// use multiproc::{Process, Value};
///
/// fn add_ten(counter: Value<u64>) {
///     for _ in 0..10 {
///         *counter.lock().unwrap() += 1;
///     }
/// }
///
/// multiproc::init();
/// let counter = Value::new(0u64)?;
/// let mut p = Process::new(add_ten, counter.clone());
/// p.start()?;
/// p.join()?;
/// assert_eq!(counter.get()?, 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Value<T: Pod> {
    g: Guarded,
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value { g: self.g.clone(), _t: PhantomData }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Value").field(&self.g.region.map().read_pod::<T>(data_at::<T>())).finish()
    }
}

impl<T: Pod> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.g.serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Value { g: Guarded::deserialize(d, Kind::Value, type_tag::<T>(), |_| Ok(()))?, _t: PhantomData })
    }
}

impl<T: Pod> Value<T> {
    /// A shared value holding `initial`, with its own lock.
    ///
    /// ```
    /// multiproc::init();
    /// let v = multiproc::Value::new(0i64)?;
    /// assert_eq!(v.get()?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(initial: T) -> Result<Value<T>, SyncError> {
        Value::create(initial, None)
    }

    /// A shared value holding `initial`, guarded by `lock` (a [`Lock`](crate::Lock) or an
    /// [`RLock`](crate::RLock)), as Python's `Value(typecode, v, lock=lock)`: values made
    /// around one lock change together under it (see [`SharedLock`]). For no lock at all,
    /// Python's `lock=False`, use [`RawValue`].
    ///
    /// ```
    /// multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// let v = multiproc::Value::with_lock(7u32, lock.clone())?;
    /// let held = lock.acquire().map_err(multiproc::SyncError::from)?;
    /// assert!(v.try_lock().is_err(), "the value's lock is `lock`");
    /// drop(held);
    /// assert_eq!(v.get()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_lock(initial: T, lock: impl Into<SharedLock>) -> Result<Value<T>, SyncError> {
        Value::create(initial, Some(lock.into()))
    }

    fn create(initial: T, lock: Option<SharedLock>) -> Result<Value<T>, SyncError> {
        let region = Region::create(Kind::Value, type_tag::<T>(), data_at::<T>() + size_of::<T>())?;
        region.map().write_pod(data_at::<T>(), initial);
        Ok(Value { g: Guarded::new(region, lock)?, _t: PhantomData })
    }

    /// The lock guarding the value (Python's `get_lock()`): its own, or the one it was
    /// made around.
    ///
    /// ```
    /// use multiproc::{SharedLock, Value};
    ///
    /// multiproc::init();
    /// let v = Value::new(0u64)?;
    /// let SharedLock::Lock(lock) = v.get_lock() else { unreachable!() };
    /// let held = lock.acquire().map_err(multiproc::SyncError::from)?;
    /// assert!(v.try_lock().is_err());
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_lock(&self) -> SharedLock {
        self.g.lock.clone()
    }

    fn lock_wait(&self, wait: Wait) -> Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        acquire_with(self.g.lock_map(), MUTEX_AT, wait, || ValueGuard { value: self, _not_send: PhantomData })
    }

    /// Takes the lock only if it is free now ([`LockError::TimedOut`] otherwise).
    ///
    /// ```
    /// multiproc::init();
    /// let v = multiproc::Value::new(1i32)?;
    /// let mut g = v.try_lock().map_err(multiproc::SyncError::from)?;
    /// *g += 1;
    /// assert!(v.try_lock().is_err());
    /// drop(g);
    /// assert_eq!(v.get()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_lock(&self) -> Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        self.lock_wait(Wait::Not)
    }

    /// Takes the lock; the guard derefs to the value.
    ///
    /// ```
    /// multiproc::init();
    /// let v = multiproc::Value::new(1u64)?;
    /// *v.lock().map_err(multiproc::SyncError::from)? *= 5;
    /// assert_eq!(v.get()?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        self.lock_wait(Wait::Forever)
    }

    /// As [`lock`](Value::lock), failing with [`LockError::TimedOut`] after `timeout`.
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let v = multiproc::Value::new(1u64)?;
    /// let held = v.lock_timeout(Duration::from_secs(1)).map_err(multiproc::SyncError::from)?;
    /// assert_eq!(*held, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        self.lock_wait(Wait::For(timeout))
    }

    /// Reads the value under the lock.
    ///
    /// ```
    /// multiproc::init();
    /// let v = multiproc::Value::new(3u8)?;
    /// assert_eq!(v.get()?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self) -> Result<T, SyncError> {
        Ok(*self.lock()?)
    }

    /// Writes the value under the lock.
    ///
    /// ```
    /// multiproc::init();
    /// let v = multiproc::Value::new(3u8)?;
    /// v.set(4)?;
    /// assert_eq!(v.get()?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, value: T) -> Result<(), SyncError> {
        *self.lock()? = value;
        Ok(())
    }
}

/// The locked value of a [`Value`]; derefs to `T`, unlocks on drop.
///
/// ```
/// use multiproc::{SyncError, Value};
///
/// multiproc::init();
/// let v = Value::new(40u64)?;
/// {
///     let mut held = v.lock().map_err(SyncError::from)?; // a read-modify-write under one lock
///     *held += 2;
/// }
/// assert_eq!(v.get()?, 42);
/// # Ok::<(), SyncError>(())
/// ```
pub struct ValueGuard<'a, T: Pod> {
    value: &'a Value<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&**self).finish()
    }
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &mutex::guarded_slice_ref::<T, _>(self.value.g.region.map(), data_at::<T>(), 1, self)[0]
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        let map = self.value.g.region.map();
        &mut mutex::guarded_slice::<T, _>(map, data_at::<T>(), 1, &mut self._not_send)[0]
    }
}

impl<T: Pod> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        let _ = mutex::unlock(self.value.g.lock_map(), MUTEX_AT);
    }
}

/// A plain-old-data value in shared memory *without* a lock, like Python's
/// `multiprocessing.RawValue`: each [`load`](RawValue::load) and
/// [`store`](RawValue::store) is one copy, and concurrent writers race (a reader may see
/// a torn mix, still a valid `T`). Use [`Value`] when updates must not be lost.
///
/// ```
/// multiproc::init();
/// let v = multiproc::RawValue::new(1.5f64)?;
/// v.store(2.5);
/// assert_eq!(v.load(), 2.5);
/// # Ok::<(), multiproc::SyncError>(())
/// ```
pub struct RawValue<T: Pod> {
    region: Arc<Region>,
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue { region: self.region.clone(), _t: PhantomData }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.load()).finish()
    }
}

impl<T: Pod> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.region.serialize_fd(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let region = Region::deserialize_fd(d, Kind::Value, type_tag::<T>())?;
        Ok(RawValue { region: Arc::new(region), _t: PhantomData })
    }
}

impl<T: Pod> RawValue<T> {
    /// A shared value holding `initial`.
    ///
    /// ```
    /// multiproc::init();
    /// let v = multiproc::RawValue::new(1u64)?;
    /// assert_eq!(v.load(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(initial: T) -> Result<RawValue<T>, SyncError> {
        let region = Region::create(Kind::Value, type_tag::<T>(), data_at::<T>() + size_of::<T>())?;
        region.map().write_pod(data_at::<T>(), initial);
        Ok(RawValue { region: Arc::new(region), _t: PhantomData })
    }

    /// Reads the value.
    ///
    /// ```
    /// multiproc::init();
    /// let v = multiproc::RawValue::new(2.5f64)?;
    /// assert_eq!(v.load(), 2.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(&self) -> T {
        self.region.map().read_pod(data_at::<T>())
    }

    /// Writes the value.
    ///
    /// ```
    /// multiproc::init();
    /// let v = multiproc::RawValue::new(0u32)?;
    /// v.store(7);
    /// assert_eq!(v.load(), 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store(&self, value: T) {
        self.region.map().write_pod(data_at::<T>(), value)
    }
}
