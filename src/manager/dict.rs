//! `DictProxy`: a shared, insertion-ordered map.

use std::borrow::Borrow;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::{self, unit};
use super::error::ManagerError;
use super::functions;
use super::handle::type_name;
use super::protocol::{Kind, dict as op};

proxy! {
    /// A proxy of a dict living in a manager's server (Python's `DictProxy`); made by
    /// [`Manager::dict`](super::Manager::dict).
    ///
    /// Every method is one round trip to the server. Keys keep their insertion order, as
    /// in a Python dict. [`modify`](Self::modify) updates a value atomically in the server.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.insert("b".into(), 2)?;
    /// d.insert("a".into(), 1)?;
    /// assert_eq!(d.get("a")?, Some(1));
    /// assert_eq!(d.keys()?, ["b", "a"]);
    /// assert_eq!(d.modify("a", |v: Option<u32>| v.unwrap_or(0) + 10)?, 11);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    DictProxy[K, V], Kind::Dict, format!("dict<{}, {}>", type_name::<K>(), type_name::<V>())
}

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    /// The value at `key`, if any. `key` may be any borrowed form of `K` that encodes
    /// the same (`&str` for `String`).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.set("a".into(), 1)?;
    /// assert_eq!(d.get("a")?, Some(1));
    /// assert_eq!(d.get("b")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
    {
        self.h.call(
            op::D_GET,
            |w| {
                w.u64(self.h.id).value(key)?;
                Ok(())
            },
            client::value::<Option<V>>,
        )
    }

    /// The values at several keys, in one round trip.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.set("a".into(), 1)?;
    /// assert_eq!(d.get_many(["a", "b"])?, [Some(1), None]); // one round trip
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_many<'q, Q: Serialize + ?Sized + 'q>(
        &self,
        keys: impl IntoIterator<Item = &'q Q>,
    ) -> Result<Vec<Option<V>>, ManagerError>
    where
        K: Borrow<Q>,
    {
        self.h.call(
            op::D_GET_MANY,
            |w| {
                w.u64(self.h.id);
                super::list::write_items::<Q, &Q>(w, keys)
            },
            client::value::<Vec<Option<V>>>,
        )
    }

    /// Sets `key` to `value`; returns the value it replaces.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// assert_eq!(d.insert("a".into(), 1)?, None);
    /// assert_eq!(d.insert("a".into(), 2)?, Some(1)); // the old value
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, ManagerError> {
        self.h.call(
            op::D_INSERT,
            |w| {
                w.u64(self.h.id).value(&key)?.value(&value)?;
                Ok(())
            },
            client::value::<Option<V>>,
        )
    }

    /// Sets `key` to `value` (Python's `d[k] = v`) without waiting for the server: the
    /// fastest write. It is applied before any later call this process makes on the
    /// manager, and before the process ends; a process told by other means (a pipe, a
    /// file) may not see it yet — use [`insert`](Self::insert) then. Errors encoding
    /// the value are returned; the server cannot refuse it.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.set("a".into(), 1)?; // does not wait for the server
    /// assert_eq!(d.len()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, key: K, value: V) -> Result<(), ManagerError> {
        self.h.post(op::D_SET, |w| w.u64(self.h.id).value(&key)?.value(&value)?.done())
    }

    /// Removes `key`; returns its value.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.set("a".into(), 1)?;
    /// assert_eq!(d.remove("a")?, Some(1));
    /// assert_eq!(d.remove("a")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
    {
        self.h.call(
            op::D_REMOVE,
            |w| {
                w.u64(self.h.id).value(key)?;
                Ok(())
            },
            client::value::<Option<V>>,
        )
    }

    /// Whether `key` is present.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.set("a".into(), 1)?;
    /// assert!(d.contains_key("a")?);
    /// assert!(!d.contains_key("z")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn contains_key<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<bool, ManagerError>
    where
        K: Borrow<Q>,
    {
        self.h.call(
            op::D_CONTAINS,
            |w| {
                w.u64(self.h.id).value(key)?;
                Ok(())
            },
            client::value::<bool>,
        )
    }

    /// The number of entries.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.update([("a".into(), 1), ("b".into(), 2)])?;
    /// assert_eq!(d.len()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.h.call(op::D_LEN, |w| w.u64(self.h.id).done(), client::value::<u64>).map(|n| n as usize)
    }

    /// Whether the dict has no entries.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// assert!(d.is_empty()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order (a snapshot).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.set("a".into(), 1)?;
    /// assert_eq!(d.keys()?, ["a"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        self.h.call(op::D_KEYS, |w| w.u64(self.h.id).done(), client::value::<Vec<K>>)
    }

    /// The values, in key insertion order (a snapshot).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.set("a".into(), 1)?;
    /// assert_eq!(d.values()?, [1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn values(&self) -> Result<Vec<V>, ManagerError> {
        self.h.call(op::D_VALUES, |w| w.u64(self.h.id).done(), client::value::<Vec<V>>)
    }

    /// The entries, in insertion order (a snapshot): what Python prints for a dict proxy.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.set("a".into(), 1)?;
    /// assert_eq!(d.items()?, [("a".to_string(), 1)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        self.h.call(op::D_ITEMS, |w| w.u64(self.h.id).done(), client::value::<Vec<(K, V)>>)
    }

    /// A live iterator over the keys, in insertion order: Python's `iter(d)` on a dict
    /// proxy, which iterates in the server rather than over a copy.
    ///
    /// It reads the keys [`DICT_ITER_CHUNK`] at a time, the first read now, and reads
    /// once more after the last key. Values replaced meanwhile change nothing, but if the
    /// dict gains or loses keys (in any process) before a later read, that read is an
    /// error saying "dictionary changed size during iteration", Python's `RuntimeError`,
    /// and the iteration ends: a change of keys made before the iteration ends is always
    /// reported. (Python reads one key per round trip, so it reports a change at the next
    /// key; here at the next read, after the keys already in hand.) [`keys`](Self::keys)
    /// is the copy Python's `d.keys()` returns.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.update([("a".to_string(), 1), ("b".to_string(), 2)])?;
    /// for key in d.iter()? {
    ///     let key = key?;
    ///     d.modify(&key, |v: Option<u32>| v.unwrap_or(0) * 10)?; // values may change
    /// }
    /// assert_eq!(d.items()?, [("a".to_string(), 10), ("b".to_string(), 20)]);
    /// let mut keys = d.iter()?;
    /// keys.next();
    /// d.remove("a")?;
    /// assert!(keys.any(|k| k.is_err())); // the keys changed: the iteration stops
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn iter(&self) -> Result<DictIter<'_, K, V>, ManagerError> {
        let mut it = DictIter { d: self, keys: Vec::new().into_iter(), version: op::ITER_START, next: 0, done: false };
        it.read()?;
        Ok(it)
    }

    /// Inserts every pair, in one round trip.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.update([("a".into(), 1), ("b".into(), 2)])?;
    /// assert_eq!(d.get("b")?, Some(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn update(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<(), ManagerError> {
        self.h.call(
            op::D_UPDATE,
            |w| {
                w.u64(self.h.id);
                let at = w.0.len();
                w.u32(0);
                let mut n = 0u32;
                for (k, v) in pairs {
                    w.value(&k)?.value(&v)?;
                    n += 1;
                }
                w.0[at..at + 4].copy_from_slice(&n.to_le_bytes());
                Ok(())
            },
            unit,
        )
    }

    /// Removes every entry.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.set("a".into(), 1)?;
    /// d.clear()?;
    /// assert!(d.is_empty()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.h.call(op::D_CLEAR, |w| w.u64(self.h.id).done(), unit)
    }

    /// Replaces the value at `key` with `f(old)` *in the server*, under the dict's lock,
    /// and returns the new value: concurrent `modify`s from many processes lose nothing
    /// (unlike Python's `d[k] += 1`). `f` is a fn item or a non-capturing closure. If it
    /// panics, the dict is unchanged and the call returns [`ManagerError::Panicked`].
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let counts = manager.dict::<String, u64>()?;
    /// for _ in 0..3 {
    ///     counts.modify("hits", |n: Option<u64>| n.unwrap_or(0) + 1)?;
    /// }
    /// assert_eq!(counts.get("hits")?, Some(3));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn modify<Q, F>(&self, key: &Q, f: F) -> Result<V, ManagerError>
    where
        Q: Serialize + ?Sized,
        K: Borrow<Q>,
        F: Fn(Option<V>) -> V + Copy + Send + 'static,
    {
        let (tramp, f) = functions::modify_option_fn::<V, F>(f);
        self.h.call(
            op::D_MODIFY,
            |w| {
                w.u64(self.h.id).value(key)?.i64(tramp).i64(f);
                Ok(())
            },
            client::value::<V>,
        )
    }
}

/// How many keys a [`DictIter`] reads from the server at a time.
pub const DICT_ITER_CHUNK: u32 = 128;

/// A live iterator over a shared dict's keys (see [`DictProxy::iter`]); each item is a
/// key, or the error that ended the iteration.
///
/// ```
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// let d = manager.dict::<String, u32>()?;
/// d.update([("a".to_string(), 1), ("b".to_string(), 2)])?;
/// let mut keys: Vec<String> = d.iter()?.collect::<Result<_, _>>()?;
/// keys.sort();
/// assert_eq!(keys, ["a", "b"]);
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[derive(Debug)]
pub struct DictIter<'a, K, V> {
    d: &'a DictProxy<K, V>,
    /// The keys read and not yet returned.
    keys: std::vec::IntoIter<K>,
    /// The dict's version of its keys when last read.
    version: u64,
    /// Where the next read starts.
    next: u64,
    /// A read found no more keys, or failed.
    done: bool,
}

impl<K, V> DictIter<'_, K, V>
where
    K: DeserializeOwned + 'static,
{
    fn read(&mut self) -> Result<(), ManagerError> {
        let result = self.d.h.call(
            op::D_KEYS_FROM,
            |w| w.u64(self.d.h.id).u64(self.version).u64(self.next).u32(DICT_ITER_CHUNK).done(),
            client::value::<(u64, u64, bool, Vec<K>)>,
        );
        let (version, next, end, keys) = result.inspect_err(|_| self.done = true)?;
        self.done = end && keys.is_empty();
        (self.version, self.next, self.keys) = (version, next, keys.into_iter());
        Ok(())
    }
}

impl<K, V> Iterator for DictIter<'_, K, V>
where
    K: DeserializeOwned + 'static,
{
    type Item = Result<K, ManagerError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(k) = self.keys.next() {
                return Some(Ok(k));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.read() {
                return Some(Err(e));
            }
        }
    }
}

impl<K, V> std::iter::FusedIterator for DictIter<'_, K, V> where K: DeserializeOwned + 'static {}
