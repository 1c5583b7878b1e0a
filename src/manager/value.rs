//! `ValueProxy` (one shared value) and `NamespaceProxy` (named values of any type).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::{self, unit};
use super::error::ManagerError;
use super::functions;
use super::handle::type_name;
use super::protocol::{Kind, namespace, value as value_op};
use crate::wire::{CodecError, codec};

proxy! {
    /// A proxy of one value living in a manager's server (Python's `Manager().Value`);
    /// made by [`Manager::value`](super::Manager::value).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let v = manager.value(1.5f64)?;
    /// v.set(2.0)?;
    /// assert_eq!(v.modify(|x: f64| x * 2.0)?, 4.0);
    /// assert_eq!(v.get()?, 4.0);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    ValueProxy[T], Kind::Value, format!("value<{}>", type_name::<T>())
}

impl<T: Serialize + DeserializeOwned + 'static> ValueProxy<T> {
    /// The current value.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let v = manager.value(0u64)?;
    /// assert_eq!(v.get()?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self) -> Result<T, ManagerError> {
        self.h.call(value_op::V_GET, |w| w.u64(self.h.id).done(), client::value::<T>)
    }

    /// Replaces the value.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let v = manager.value(0u64)?;
    /// v.set(5)?;
    /// assert_eq!(v.get()?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, value: T) -> Result<(), ManagerError> {
        self.h.call(value_op::V_SET, |w| w.u64(self.h.id).value(&value)?.done(), unit)
    }

    /// Replaces the value with `f(old)` in the server, atomically; returns the new value.
    /// `f` is a fn item or a non-capturing closure.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let v = manager.value(0u64)?;
    /// assert_eq!(v.modify(|n| n + 1)?, 1); // no lost update, whoever else modifies
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn modify<F: Fn(T) -> T + Copy + Send + 'static>(&self, f: F) -> Result<T, ManagerError> {
        let (tramp, f) = functions::modify_value_fn::<T, F>(f);
        self.h.call(value_op::V_MODIFY, |w| w.u64(self.h.id).i64(tramp).i64(f).done(), client::value::<T>)
    }
}

proxy! {
    /// A proxy of a namespace living in a manager's server (Python's `Namespace`): named
    /// attributes, each of its own type; made by
    /// [`Manager::namespace`](super::Manager::namespace).
    ///
    /// Reading an attribute as another type than it was set with is an error naming both.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("x", &10u32)?;
    /// ns.set("name", "shared")?;
    /// assert_eq!(ns.get::<u32>("x")?, Some(10));
    /// assert_eq!(ns.get::<String>("name")?.as_deref(), Some("shared"));
    /// assert!(ns.get::<String>("x").is_err()); // x holds a u32
    /// assert_eq!(ns.names()?, ["name", "x"]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    NamespaceProxy[], Kind::Namespace, "namespace".to_string()
}

/// The name a type is stored under: `str` and `String` are one type on the wire.
fn stored_type_name<T: ?Sized>() -> &'static str {
    let n = type_name::<T>();
    if n == "str" { type_name::<String>() } else { n }
}

impl NamespaceProxy {
    /// The attribute `name` as a `T`; `None` if it is not set.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("x", &1.5f64)?;
    /// assert_eq!(ns.get::<f64>("x")?, Some(1.5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ManagerError> {
        let want = stored_type_name::<T>();
        self.h.call(
            namespace::N_GET,
            |w| w.u64(self.h.id).str(name).done(),
            |p| {
                let err = |m: String| CodecError { op: "decode", type_name: want, message: m };
                match p.split_first() {
                    Some((0, [])) => Ok(None),
                    Some((1, rest)) => {
                        let (found, value) = codec::decode_prefix::<String>(rest)?;
                        if found != want {
                            return Err(err(format!("attribute `{name}` holds a `{found}`")));
                        }
                        codec::decode(value).map(Some)
                    }
                    _ => Err(err("malformed reply".into())),
                }
            },
        )
    }

    /// Sets the attribute `name` to `value` (any serializable type).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("name", "job")?;
    /// assert_eq!(ns.get::<String>("name")?.as_deref(), Some("job"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), ManagerError> {
        self.h.call(
            namespace::N_SET,
            |w| w.u64(self.h.id).str(name).str(stored_type_name::<T>()).value(value)?.done(),
            unit,
        )
    }

    /// Removes the attribute `name`; returns whether it was set.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("x", &1u8)?;
    /// assert!(ns.remove("x")?);
    /// assert!(!ns.remove("x")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove(&self, name: &str) -> Result<bool, ManagerError> {
        self.h.call(namespace::N_REMOVE, |w| w.u64(self.h.id).str(name).done(), client::value::<bool>)
    }

    /// The names of the attributes, sorted.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("x", &1u8)?;
    /// assert_eq!(ns.names()?, ["x"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn names(&self) -> Result<Vec<String>, ManagerError> {
        self.h.call(namespace::N_NAMES, |w| w.u64(self.h.id).done(), client::value::<Vec<String>>)
    }
}
