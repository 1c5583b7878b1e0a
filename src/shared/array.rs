use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Guarded, SharedLock, data_at};
use crate::region::{Kind, Region, type_tag};
use crate::sync::{LockError, MUTEX_AT, SyncError, Wait, acquire_with};
use crate::sys::mutex;
use crate::sys::shm::Pod;

/// Where an array's length is stored.
const LEN_AT: usize = 112;

fn create<T: Pod>(items: &[T]) -> Result<Region, SyncError> {
    let bytes = size_of_val(items);
    let region = Region::create(Kind::Array, type_tag::<T>(), data_at::<T>() + bytes.max(1))?;
    region.map().atomic_u64(LEN_AT).store(items.len() as u64, Ordering::SeqCst);
    for (i, v) in items.iter().enumerate() {
        region.map().write_pod(data_at::<T>() + i * size_of::<T>(), *v);
    }
    Ok(region)
}

fn open<'de, T: Pod, D: Deserializer<'de>>(d: D) -> Result<Region, D::Error> {
    let region = Region::deserialize_fd(d, Kind::Array, type_tag::<T>())?;
    check_len::<T>(&region).map_err(serde::de::Error::custom)?;
    Ok(region)
}

/// Whether the length an array's memory records fits that memory.
fn check_len<T>(region: &Region) -> Result<(), String> {
    let len = region.map().atomic_u64(LEN_AT).load(Ordering::SeqCst);
    let fits = (len as usize)
        .checked_mul(size_of::<T>())
        .and_then(|b| b.checked_add(data_at::<T>()))
        .is_some_and(|end| end <= region.map().len());
    if fits { Ok(()) } else { Err(format!("shared array of {len} elements does not fit its memory")) }
}

fn len_of(region: &Region) -> usize {
    region.map().atomic_u64(LEN_AT).load(Ordering::Relaxed) as usize
}

/// A fixed-length array of plain-old-data in shared memory, with a lock, like Python's
/// `multiprocessing.Array`.
///
/// [`lock`](Array::lock) gives a guard that derefs to `[T]`; [`get`](Array::get),
/// [`set`](Array::set) and [`to_vec`](Array::to_vec) take the lock for one access.
///
/// ```
/// use multiproc::{Array, Process};
///
/// fn square_all(a: Array<i32>) {
///     for x in a.lock().unwrap().iter_mut() {
///         *x *= *x;
///     }
/// }
///
/// multiproc::init();
/// let a = Array::from_slice(&[1, 2, 3])?;
/// let mut p = Process::new(square_all, a.clone());
/// p.start()?;
/// p.join()?;
/// assert_eq!(a.to_vec()?, [1, 4, 9]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Array<T: Pod> {
    g: Guarded,
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array { g: self.g.clone(), _t: PhantomData }
    }
}

impl<T: Pod> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array").field("len", &self.len()).finish()
    }
}

impl<T: Pod> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.g.serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Array { g: Guarded::deserialize(d, Kind::Array, type_tag::<T>(), check_len::<T>)?, _t: PhantomData })
    }
}

impl<T: Pod> Array<T> {
    /// A shared array of `len` copies of `fill`.
    ///
    /// ```
    /// multiproc::init();
    /// let a = multiproc::Array::new(4, 0u32)?;
    /// assert_eq!(a.to_vec()?, [0, 0, 0, 0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(len: usize, fill: T) -> Result<Array<T>, SyncError> {
        Array::from_slice(&vec![fill; len])
    }

    /// A shared array holding a copy of `items`, with its own lock.
    ///
    /// ```
    /// multiproc::init();
    /// let a = multiproc::Array::from_slice(&[1.5f64, 2.5])?;
    /// assert_eq!(a.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_slice(items: &[T]) -> Result<Array<T>, SyncError> {
        Ok(Array { g: Guarded::new(create(items)?, None)?, _t: PhantomData })
    }

    /// A shared array holding a copy of `items`, guarded by `lock` (a
    /// [`Lock`](crate::Lock) or an [`RLock`](crate::RLock)), as Python's
    /// `Array(typecode, items, lock=lock)`. For no lock, Python's `lock=False`, use
    /// [`RawArray`].
    ///
    /// ```
    /// use multiproc::{Array, RLock, Value};
    ///
    /// multiproc::init();
    /// let lock = RLock::new()?;
    /// let items = Array::with_lock(&[1u32, 2], lock.clone())?;
    /// let count = Value::with_lock(2usize, lock)?;
    /// let mut g = items.lock().map_err(multiproc::SyncError::from)?;
    /// g[0] = 10;
    /// count.set(2)?; // the same RLock, taken again by this thread
    /// drop(g);
    /// assert_eq!(items.to_vec()?, [10, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_lock(items: &[T], lock: impl Into<SharedLock>) -> Result<Array<T>, SyncError> {
        Ok(Array { g: Guarded::new(create(items)?, Some(lock.into()))?, _t: PhantomData })
    }

    /// The lock guarding the elements (Python's `get_lock()`): its own, or the one it
    /// was made around.
    ///
    /// ```
    /// multiproc::init();
    /// let a = multiproc::Array::new(3, 0u8)?;
    /// let guard = a.lock().map_err(multiproc::SyncError::from)?;
    /// assert!(a.get_lock().locked());
    /// drop(guard);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_lock(&self) -> SharedLock {
        self.g.lock.clone()
    }

    /// The number of elements.
    ///
    /// ```
    /// multiproc::init();
    /// let a = multiproc::Array::new(3, 0i64)?;
    /// assert_eq!(a.len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        len_of(&self.g.region)
    }

    /// Whether it has no elements.
    ///
    /// ```
    /// multiproc::init();
    /// assert!(!multiproc::Array::from_slice(&[1u8])?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock_wait(&self, wait: Wait) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        acquire_with(self.g.lock_map(), MUTEX_AT, wait, || ArrayGuard { array: self, _not_send: PhantomData })
    }

    /// Takes the lock; the guard derefs to the elements.
    ///
    /// ```
    /// multiproc::init();
    /// let a = multiproc::Array::new(3, 1u32)?;
    /// let mut held = a.lock().map_err(multiproc::SyncError::from)?;
    /// held.iter_mut().for_each(|x| *x *= 10);
    /// drop(held);
    /// assert_eq!(a.to_vec()?, [10, 10, 10]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        self.lock_wait(Wait::Forever)
    }

    /// As [`lock`](Array::lock), failing with [`LockError::TimedOut`] after `timeout`.
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let a = multiproc::Array::new(2, 0u8)?;
    /// let held = a.lock_timeout(Duration::from_secs(1)).map_err(multiproc::SyncError::from)?;
    /// assert_eq!(held.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        self.lock_wait(Wait::For(timeout))
    }

    /// Element `index` (under the lock), `None` past the end.
    ///
    /// ```
    /// multiproc::init();
    /// let a = multiproc::Array::from_slice(&[7u8, 8])?;
    /// assert_eq!(a.get(1)?, Some(8));
    /// assert_eq!(a.get(2)?, None); // out of range
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, index: usize) -> Result<Option<T>, SyncError> {
        Ok(self.lock()?.get(index).copied())
    }

    /// Sets element `index` (under the lock); returns `false` (changing nothing) past the end.
    ///
    /// ```
    /// multiproc::init();
    /// let a = multiproc::Array::new(2, 0u16)?;
    /// assert!(a.set(0, 9)?);
    /// assert!(!a.set(5, 9)?); // out of range: nothing written
    /// assert_eq!(a.to_vec()?, [9, 0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<bool, SyncError> {
        Ok(match self.lock()?.get_mut(index) {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        })
    }

    /// A copy of all elements (under the lock).
    ///
    /// ```
    /// multiproc::init();
    /// let a = multiproc::Array::from_slice(&[1u32, 2, 3])?;
    /// assert_eq!(a.to_vec()?, vec![1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<T>, SyncError> {
        Ok(self.lock()?.to_vec())
    }
}

/// The locked elements of an [`Array`]; derefs to `[T]`, unlocks on drop.
///
/// ```
/// use multiproc::{Array, SyncError};
///
/// multiproc::init();
/// let a = Array::from_slice(&[1u32, 2, 3])?;
/// {
///     let mut held = a.lock().map_err(SyncError::from)?; // the whole array, locked once
///     held[0] = 10;
///     held[2] += held[1];
/// } // unlocked here
/// assert_eq!(a.to_vec()?, [10, 2, 5]);
/// # Ok::<(), SyncError>(())
/// ```
pub struct ArrayGuard<'a, T: Pod> {
    array: &'a Array<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        let r = &self.array.g.region;
        mutex::guarded_slice_ref::<T, _>(r.map(), data_at::<T>(), len_of(r), self)
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        let r = &self.array.g.region;
        mutex::guarded_slice::<T, _>(r.map(), data_at::<T>(), len_of(r), &mut self._not_send)
    }
}

impl<T: Pod> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        let _ = mutex::unlock(self.array.g.lock_map(), MUTEX_AT);
    }
}

/// A fixed-length array of plain-old-data in shared memory *without* a lock, like
/// Python's `multiprocessing.RawArray`: each access is one copy; concurrent writers race.
///
/// ```
/// multiproc::init();
/// let a = multiproc::RawArray::new(4, 0u8)?;
/// a.set(2, 7);
/// assert_eq!(a.get(2), Some(7));
/// assert_eq!(a.to_vec(), [0, 0, 7, 0]);
/// # Ok::<(), multiproc::SyncError>(())
/// ```
pub struct RawArray<T: Pod> {
    region: Arc<Region>,
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray { region: self.region.clone(), _t: PhantomData }
    }
}

impl<T: Pod> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray").field("len", &self.len()).finish()
    }
}

impl<T: Pod> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.region.serialize_fd(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(RawArray { region: Arc::new(open::<T, D>(d)?), _t: PhantomData })
    }
}

impl<T: Pod> RawArray<T> {
    /// A shared array of `len` copies of `fill`.
    ///
    /// ```
    /// multiproc::init();
    /// let a = multiproc::RawArray::new(3, 0u64)?;
    /// assert_eq!(a.to_vec(), [0, 0, 0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(len: usize, fill: T) -> Result<RawArray<T>, SyncError> {
        RawArray::from_slice(&vec![fill; len])
    }

    /// A shared array holding a copy of `items`.
    ///
    /// ```
    /// multiproc::init();
    /// let a = multiproc::RawArray::from_slice(&[1i32, -1])?;
    /// assert_eq!(a.get(1), Some(-1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_slice(items: &[T]) -> Result<RawArray<T>, SyncError> {
        Ok(RawArray { region: Arc::new(create(items)?), _t: PhantomData })
    }

    /// The number of elements.
    ///
    /// ```
    /// multiproc::init();
    /// assert_eq!(multiproc::RawArray::new(5, 0u8)?.len(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        len_of(&self.region)
    }

    /// Whether it has no elements.
    ///
    /// ```
    /// multiproc::init();
    /// assert!(!multiproc::RawArray::new(1, 0u8)?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `index`, `None` past the end.
    ///
    /// ```
    /// multiproc::init();
    /// let a = multiproc::RawArray::from_slice(&[5u8])?;
    /// assert_eq!(a.get(0), Some(5));
    /// assert_eq!(a.get(1), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, index: usize) -> Option<T> {
        (index < self.len()).then(|| self.region.map().read_pod(data_at::<T>() + index * size_of::<T>()))
    }

    /// Sets element `index`; returns `false` (changing nothing) past the end.
    ///
    /// ```
    /// multiproc::init();
    /// let a = multiproc::RawArray::new(1, 0u8)?;
    /// assert!(a.set(0, 42)); // no lock: each element is written atomically or not at all by you
    /// assert_eq!(a.get(0), Some(42));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, index: usize, value: T) -> bool {
        if index >= self.len() {
            return false;
        }
        self.region.map().write_pod(data_at::<T>() + index * size_of::<T>(), value);
        true
    }

    /// A copy of all elements.
    ///
    /// ```
    /// multiproc::init();
    /// let a = multiproc::RawArray::from_slice(&[3u16, 4])?;
    /// assert_eq!(a.to_vec(), vec![3, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len()).filter_map(|i| self.get(i)).collect()
    }
}
