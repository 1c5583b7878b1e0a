//! Your own types in the server: [`SharedObject`] and [`ObjectProxy`] (Python's
//! `BaseManager.register`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client;
use super::error::ManagerError;
use super::functions;
use super::protocol::{Kind, custom as op};
use super::type_name;

/// A type whose values can live in a manager's server, as objects registered with
/// Python's `BaseManager.register` do.
///
/// The server builds the object from [`Init`](Self::Init) (so the object itself need
/// not be serializable: it may hold files or connections), and every
/// [`ObjectProxy::call`] runs a function `fn(&mut Self, A) -> R` on it in the server,
/// one call at a time. The server is the same program, so any fn item or non-capturing
/// closure of the right shape is a method.
///
/// ```
/// use multiproc::manager::{ObjectProxy, SharedObject};
///
/// struct Tally {
///     seen: Vec<String>,
/// }
///
/// impl SharedObject for Tally {
///     type Init = ();
///     fn create(_: ()) -> Tally {
///         Tally { seen: Vec::new() }
///     }
/// }
///
/// impl Tally {
///     fn add(&mut self, word: String) -> usize {
///         self.seen.push(word);
///         self.seen.len()
///     }
/// }
///
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// let tally: ObjectProxy<Tally> = manager.create_object(())?;
/// assert_eq!(tally.call(Tally::add, "a".to_string())?, 1);
/// assert_eq!(tally.call(Tally::add, "b".to_string())?, 2);
/// let words = tally.call(|t: &mut Tally, ()| t.seen.clone(), ())?;
/// assert_eq!(words, ["a", "b"]);
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
pub trait SharedObject: Send + 'static {
    /// What the object is built from; it travels to the server.
    type Init: Serialize + DeserializeOwned + 'static;

    /// Builds the object, in the server.
    fn create(init: Self::Init) -> Self;
}

proxy! {
    /// A proxy of an object of your type `T` living in a manager's server; made by
    /// [`Manager::create_object`](super::Manager::create_object). See [`SharedObject`].
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
