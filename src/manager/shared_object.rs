//! The trait a type implements to live in a manager's server, below both the proxy
//! (`object.rs`) and the server-side trampolines (`functions.rs`) that use it.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A type whose values can live in a manager's server, as objects registered with
/// Python's `BaseManager.register` do.
///
/// The server builds the object from [`Init`](Self::Init) (so the object itself need
/// not be serializable: it may hold files or connections), and every
/// [`ObjectProxy::call`](super::ObjectProxy::call) runs a function `fn(&mut Self, A) -> R`
/// on it in the server, one call at a time. The server is the same program, so any fn item or non-capturing
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
