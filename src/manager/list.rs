//! `ListProxy` and `ArrayProxy`: shared sequences (an array's length is fixed).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::{self, unit};
use super::error::ManagerError;
use super::functions;
use super::handle::Handle;
use super::handle::type_name;
use super::protocol::{Kind, Writer, seq as op};
use crate::wire::CodecError;

/// Writes a count and then each item, length-prefixed.
pub(crate) fn write_items<T: Serialize + ?Sized, B: std::borrow::Borrow<T>>(
    w: &mut Writer<'_>,
    items: impl IntoIterator<Item = B>,
) -> Result<(), CodecError> {
    let at = w.0.len();
    w.u32(0);
    let mut n = 0u32;
    for item in items {
        w.value(item.borrow())?;
        n += 1;
    }
    w.0[at..at + 4].copy_from_slice(&n.to_le_bytes());
    Ok(())
}

proxy! {
    /// A proxy of a list living in a manager's server (Python's `ListProxy`); made by
    /// [`Manager::list`](super::Manager::list).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.push(1)?;
    /// l.extend([2, 3])?;
    /// assert_eq!(l.len()?, 3);
    /// assert_eq!(l.pop()?, Some(3));
    /// let doubled: Vec<u32> = l.iter()?.map(|x| x * 2).collect();
    /// assert_eq!(doubled, [2, 4]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    ListProxy[T], Kind::List, format!("list<{}>", type_name::<T>())
}

proxy! {
    /// A proxy of a fixed-length array living in a manager's server (Python's
    /// `Manager().Array`); made by [`Manager::array`](super::Manager::array).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([0i64; 4])?;
    /// a.set(2, 7)?;
    /// assert_eq!(a.modify(2, |x: i64| x * 3)?, 21);
    /// assert_eq!(a.to_vec()?, [0, 0, 21, 0]);
    /// assert!(a.set(4, 1).is_err()); // past the end
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    ArrayProxy[T], Kind::Array, format!("array<{}>", type_name::<T>())
}

/// The operations lists and arrays share.
fn get<T: DeserializeOwned>(c: &Handle, id: u64, index: usize) -> Result<Option<T>, ManagerError> {
    c.call(op::S_GET, |w| w.u64(id).u64(index as u64).done(), client::value::<Option<T>>)
}

fn set<T: Serialize>(c: &Handle, id: u64, index: usize, value: &T) -> Result<(), ManagerError> {
    c.call(op::S_SET, |w| w.u64(id).u64(index as u64).value(value)?.done(), unit)
}

fn len(c: &Handle, id: u64) -> Result<usize, ManagerError> {
    c.call(op::S_LEN, |w| w.u64(id).done(), client::value::<u64>).map(|n| n as usize)
}

fn snapshot<T: DeserializeOwned>(c: &Handle, id: u64) -> Result<Vec<T>, ManagerError> {
    c.call(op::S_SNAPSHOT, |w| w.u64(id).done(), client::value::<Vec<T>>)
}

fn modify<T, F>(c: &Handle, id: u64, index: usize, f: F) -> Result<T, ManagerError>
where
    T: Serialize + DeserializeOwned + 'static,
    F: Fn(T) -> T + Copy + Send + 'static,
{
    let (tramp, f) = functions::modify_value_fn::<T, F>(f);
    c.call(op::S_MODIFY, |w| w.u64(id).u64(index as u64).i64(tramp).i64(f).done(), client::value::<T>)
}

impl<T: Serialize + DeserializeOwned + 'static> ListProxy<T> {
    /// Appends `value` (Python's `append`) without waiting for the server: it is applied
    /// before any later call this process makes on the manager, and before the process
    /// ends (see [`DictProxy::set`](super::DictProxy::set)).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.push(1)?;
    /// l.push(2)?;
    /// assert_eq!(l.to_vec()?, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push(&self, value: T) -> Result<(), ManagerError> {
        self.h.post(op::S_PUSH, |w| w.u64(self.h.id).value(&value)?.done())
    }

    /// Removes and returns the last element.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.push(1)?;
    /// assert_eq!(l.pop()?, Some(1));
    /// assert_eq!(l.pop()?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        self.h.call(op::S_POP, |w| w.u64(self.h.id).done(), client::value::<Option<T>>)
    }

    /// The element at `index`, if the list is that long.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.push(7)?;
    /// assert_eq!(l.get(0)?, Some(7));
    /// assert_eq!(l.get(1)?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, index: usize) -> Result<Option<T>, ManagerError> {
        get(&self.h, self.h.id, index)
    }

    /// Replaces the element at `index`; [`ManagerError::IndexOutOfRange`] past the end.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.push(7)?;
    /// l.set(0, 8)?;
    /// assert_eq!(l.get(0)?, Some(8));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<(), ManagerError> {
        set(&self.h, self.h.id, index, &value)
    }

    /// Inserts `value` before `index` (at the end if `index` is the length).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.push(2)?;
    /// l.insert(0, 1)?;
    /// assert_eq!(l.to_vec()?, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn insert(&self, index: usize, value: T) -> Result<(), ManagerError> {
        self.h.call(op::S_INSERT, |w| w.u64(self.h.id).u64(index as u64).value(&value)?.done(), unit)
    }

    /// Removes and returns the element at `index`.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.extend([1, 2, 3])?;
    /// assert_eq!(l.remove(1)?, 2);
    /// assert_eq!(l.to_vec()?, [1, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove(&self, index: usize) -> Result<T, ManagerError> {
        self.h.call(op::S_REMOVE, |w| w.u64(self.h.id).u64(index as u64).done(), client::value::<T>)
    }

    /// The number of elements.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.extend([1, 2])?;
    /// assert_eq!(l.len()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> Result<usize, ManagerError> {
        len(&self.h, self.h.id)
    }

    /// Whether the list is empty.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// assert!(l.is_empty()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// Appends every element, in one round trip.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.extend(0..3)?;
    /// assert_eq!(l.to_vec()?, [0, 1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        self.h.call(
            op::S_EXTEND,
            |w| {
                w.u64(self.h.id);
                write_items::<T, T>(w, values)
            },
            unit,
        )
    }

    /// Removes every element.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.extend(0..3)?;
    /// l.clear()?;
    /// assert!(l.is_empty()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.h.call(op::S_CLEAR, |w| w.u64(self.h.id).done(), unit)
    }

    /// All elements, copied in one round trip (what Python prints for a list proxy).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.extend([5, 6])?;
    /// assert_eq!(l.to_vec()?, vec![5, 6]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        snapshot(&self.h, self.h.id)
    }

    /// An iterator over a snapshot of the elements, taken now in one round trip; later
    /// changes to the list do not show in it.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.extend([5, 6])?;
    /// assert_eq!(l.iter()?.sum::<u32>(), 11);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>, ManagerError> {
        Ok(self.to_vec()?.into_iter())
    }

    /// Replaces the element at `index` with `f(old)` in the server, atomically; returns
    /// the new element. `f` is a fn item or a non-capturing closure.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// l.push(10)?;
    /// assert_eq!(l.modify(0, |x| x + 1)?, 11); // atomically, in the server
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn modify<F: Fn(T) -> T + Copy + Send + 'static>(&self, index: usize, f: F) -> Result<T, ManagerError> {
        modify(&self.h, self.h.id, index, f)
    }
}

impl<T: Serialize + DeserializeOwned + 'static> ArrayProxy<T> {
    /// The element at `index`, if the array is that long.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([1u32, 2, 3])?;
    /// assert_eq!(a.get(0)?, Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, index: usize) -> Result<Option<T>, ManagerError> {
        get(&self.h, self.h.id, index)
    }

    /// Replaces the element at `index`; [`ManagerError::IndexOutOfRange`] past the end.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([1u32, 2, 3])?;
    /// a.set(0, 9)?;
    /// assert_eq!(a.to_vec()?, [9, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<(), ManagerError> {
        set(&self.h, self.h.id, index, &value)
    }

    /// The array's (fixed) length.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([1u32, 2, 3])?;
    /// assert_eq!(a.len()?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> Result<usize, ManagerError> {
        len(&self.h, self.h.id)
    }

    /// Whether the array has length 0.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([1u32, 2, 3])?;
    /// assert!(!a.is_empty()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// All elements, copied in one round trip.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([1u32, 2, 3])?;
    /// assert_eq!(a.to_vec()?, vec![1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        snapshot(&self.h, self.h.id)
    }

    /// An iterator over a snapshot of the elements.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([1u32, 2, 3])?;
    /// assert_eq!(a.iter()?.max(), Some(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>, ManagerError> {
        Ok(self.to_vec()?.into_iter())
    }

    /// Replaces the element at `index` with `f(old)` in the server, atomically; returns
    /// the new element.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([1u32, 2, 3])?;
    /// assert_eq!(a.modify(2, |x| x * 10)?, 30);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn modify<F: Fn(T) -> T + Copy + Send + 'static>(&self, index: usize, f: F) -> Result<T, ManagerError> {
        modify(&self.h, self.h.id, index, f)
    }
}
