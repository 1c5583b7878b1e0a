//! Your own types in the server: [`SharedObject`] and [`ObjectProxy`] (Python's
//! `BaseManager.register`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client;
use super::error::ManagerError;
use super::functions;
use super::handle::type_name;
use super::protocol::{Kind, custom as op};
use super::shared_object::SharedObject;

proxy! {
    /// A proxy of an object of your type `T` living in a manager's server; made by
    /// [`Manager::create_object`](super::Manager::create_object). See [`SharedObject`].
    ///
    /// ```
    /// use multiproc::manager::{ObjectProxy, SharedObject};
    ///
    /// /// A counter that lives in the manager's server.
    /// struct Counter(u64);
    ///
    /// impl SharedObject for Counter {
    ///     type Init = u64;
    ///     fn create(start: u64) -> Counter {
    ///         Counter(start)
    ///     }
    /// }
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let counter: ObjectProxy<Counter> = manager.create_object(10)?;
    /// let other = counter.clone(); // another reference to the same object
    /// other.call(|c: &mut Counter, by: u64| c.0 += by, 5)?;
    /// assert_eq!(counter.call(|c: &mut Counter, ()| c.0, ())?, 15);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    ObjectProxy[T], Kind::Custom, format!("object<{}>", type_name::<T>())
}

impl<T: SharedObject> ObjectProxy<T> {
    /// Runs `method(&mut object, arg)` in the server, under the object's lock, and
    /// returns its result. `method` is a fn item (such as `T::some_method`) or a
    /// non-capturing closure. A panic in it is returned as [`ManagerError::Panicked`];
    /// the object stays in the server.
    pub fn call<F, A, R>(&self, method: F, arg: A) -> Result<R, ManagerError>
    where
        F: Fn(&mut T, A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let (tramp, f) = functions::call_fn::<T, F, A, R>(method);
        self.h.call(op::CALL, |w| w.u64(self.h.id).i64(tramp).i64(f).value(&arg)?.done(), client::value::<R>)
    }
}
