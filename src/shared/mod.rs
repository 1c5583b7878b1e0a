//! Shared memory: `Value`/`Array` (plain-old-data with an attached lock), their raw
//! variants, named `SharedMemory` segments, the `ShareableList` built on one, and the
//! `SharedMemoryManager` that keeps segments until its shutdown.

mod array;
mod list;
mod memory;
mod memory_manager;
mod value;

pub use array::{Array, ArrayGuard, RawArray};
pub use list::{ShareableItem, ShareableList};
pub use memory::SharedMemory;
pub use memory_manager::SharedMemoryManager;
pub use value::{RawValue, Value, ValueGuard};

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::region::{Kind, Region};
use crate::sync::{Lock, MUTEX_AT, RLock};
use crate::sys::mutex;

/// The lock guarding a [`Value`] or an [`Array`], as Python's `get_lock()` returns it: the
/// value's own [`Lock`], or the `Lock` or `RLock` it was made around (`with_lock`).
///
/// Values made around one lock are updated together under it: with an [`RLock`], the
/// thread holding one value's guard may lock the others too.
///
/// ```
/// use multiproc::{RLock, SharedLock, Value};
///
/// multiproc::init();
/// let lock = RLock::new()?;
/// let (a, b) = (Value::with_lock(1i64, lock.clone())?, Value::with_lock(-1i64, lock)?);
/// {
///     let mut ga = a.lock().map_err(multiproc::SyncError::from)?;
///     let mut gb = b.lock().map_err(multiproc::SyncError::from)?; // same RLock, same thread
///     (*ga, *gb) = (*ga + 1, *gb - 1); // no process sees one changed and not the other
/// }
/// assert!(matches!(a.get_lock(), SharedLock::RLock(_)));
/// assert_eq!((a.get()?, b.get()?), (2, -2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SharedLock {
    /// A non-recursive lock (the default: each value has its own).
    Lock(Lock),
    /// A recursive lock.
    RLock(RLock),
}

impl From<Lock> for SharedLock {
    fn from(l: Lock) -> SharedLock {
        SharedLock::Lock(l)
    }
}

impl From<RLock> for SharedLock {
    fn from(l: RLock) -> SharedLock {
        SharedLock::RLock(l)
    }
}

impl SharedLock {
    pub(crate) fn region(&self) -> &Arc<Region> {
        match self {
            SharedLock::Lock(l) => &l.region,
            SharedLock::RLock(l) => &l.region,
        }
    }

    /// Whether any process holds the lock now (see [`Lock::locked`]).
    ///
    /// ```
    /// multiproc::init();
    /// let v = multiproc::Value::new(0u8)?;
    /// let guard = v.lock().map_err(multiproc::SyncError::from)?;
    /// assert!(v.get_lock().locked());
    /// drop(guard);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn locked(&self) -> bool {
        mutex::is_locked(self.region().map(), MUTEX_AT)
    }
}

/// A `Value`'s or an `Array`'s memory and the lock guarding it, and how they travel.
#[derive(Clone)]
pub(crate) struct Guarded {
    pub(crate) region: Arc<Region>,
    pub(crate) lock: SharedLock,
}

impl Guarded {
    /// Data in `region`, guarded by its own lock (`init_lock` sets it up), or by `lock`.
    pub(crate) fn new(region: Region, lock: Option<SharedLock>) -> std::io::Result<Guarded> {
        let region = Arc::new(region);
        let lock = match lock {
            Some(lock) => lock,
            None => {
                mutex::init(region.map(), MUTEX_AT, false)?;
                region.mark_lock_inside();
                SharedLock::Lock(Lock { region: region.clone() })
            }
        };
        Ok(Guarded { region, lock })
    }

    /// The mapping the lock lives in.
    pub(crate) fn lock_map(&self) -> &crate::sys::shm::Mapping {
        self.lock.region().map()
    }

    pub(crate) fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index = crate::wire::fds::attach(self.region.fd()).map_err(serde::ser::Error::custom)?;
        let outside = (!Arc::ptr_eq(&self.region, self.lock.region())).then_some(&self.lock);
        (index, outside).serialize(s)
    }

    /// Reads what `serialize` wrote; `check` vets the data region's layout.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
        kind: Kind,
        tag: u64,
        check: impl FnOnce(&Region) -> Result<(), String>,
    ) -> Result<Guarded, D::Error> {
        let (index, outside) = <(u32, Option<SharedLock>)>::deserialize(d)?;
        let region = Region::open_index(index, kind, tag).map_err(serde::de::Error::custom)?;
        check(&region).map_err(serde::de::Error::custom)?;
        let region = Arc::new(region);
        let lock = outside.unwrap_or_else(|| SharedLock::Lock(Lock { region: region.clone() }));
        Ok(Guarded { region, lock })
    }
}

/// Where the data of a `Value`/`Array` of `T` starts in its region.
pub(crate) fn data_at<T>() -> usize {
    128usize.next_multiple_of(align_of::<T>())
}
