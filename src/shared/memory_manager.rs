//! `SharedMemoryManager`: segments that live until a shutdown, not until a handle drops.

use std::io;
use std::sync::Mutex;

use super::memory::unlink_owned;
use super::{ShareableItem, ShareableList, SharedMemory};

/// Creates [`SharedMemory`] segments and [`ShareableList`]s that all live until
/// [`shutdown`](Self::shutdown) (or the manager's drop) unlinks them, like Python's
/// `multiprocessing.managers.SharedMemoryManager`.
///
/// The handles it returns are not owners: dropping one, here or in another process,
/// removes nothing, so segments can be made, handed out and forgotten. If this process
/// ends without shutting the manager down — a normal exit, a panic, or a SIGKILL — the
/// names are removed all the same: they stay recorded for the exit hook and the watcher
/// process that remove a killed process's segments (see [`SharedMemory`]).
///
/// Unlike Python's, the manager is not a server process other processes connect to:
/// segments are made through it by this process only; other processes use them by name
/// or by receiving the handles.
///
/// ```
/// use multiproc::{ShareableList, SharedMemory, SharedMemoryManager};
///
/// multiproc::init();
/// let smm = SharedMemoryManager::new();
/// let name = {
///     let list = smm.shareable_list(["a", "b"])?;
///     list.name().to_string()
/// }; // the handle is gone, the list is not
/// assert_eq!(ShareableList::attach(&name)?.len(), 2);
/// let shm = smm.shared_memory(4096)?;
/// assert_eq!(smm.names().len(), 2);
/// smm.shutdown()?;
/// assert!(ShareableList::attach(&name).is_err());
/// assert!(SharedMemory::attach(shm.name()).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct SharedMemoryManager {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The names made and not yet unlinked by the manager, with their leading `/`.
    paths: Vec<String>,
    shut: bool,
}

impl SharedMemoryManager {
    /// A manager with no segments yet.
    pub fn new() -> SharedMemoryManager {
        SharedMemoryManager::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes over `shm`'s name; an error once the manager is shut down (the segment is
    /// then removed at once).
    fn adopt(&self, shm: &mut SharedMemory) -> io::Result<()> {
        let mut state = self.state();
        if state.shut {
            return Err(io::Error::other("the SharedMemoryManager is shut down: it makes no more segments"));
        }
        shm.give_up_ownership();
        state.paths.push(shm.path().to_string());
        Ok(())
    }

    /// A new segment of `size` bytes (Python's `smm.SharedMemory(size)`), removed at the
    /// manager's shutdown.
    pub fn shared_memory(&self, size: usize) -> io::Result<SharedMemory> {
        self.refuse_if_shut()?;
        let mut shm = SharedMemory::create(size)?;
        self.adopt(&mut shm)?;
        Ok(shm)
    }

    /// A new [`ShareableList`] of `items` (Python's `smm.ShareableList(sequence)`),
    /// removed at the manager's shutdown.
    pub fn shareable_list<I, T>(&self, items: I) -> io::Result<ShareableList>
    where
        I: IntoIterator<Item = T>,
        T: Into<ShareableItem>,
    {
        self.refuse_if_shut()?;
        let mut list = ShareableList::create(items)?;
        self.adopt(list.shm_mut())?;
        Ok(list)
    }

    fn refuse_if_shut(&self) -> io::Result<()> {
        if self.state().shut {
            return Err(io::Error::other("the SharedMemoryManager is shut down: it makes no more segments"));
        }
        Ok(())
    }

    /// The names of the segments it made that are still there (without the leading `/`).
    pub fn names(&self) -> Vec<String> {
        self.state().paths.iter().map(|p| p[1..].to_string()).collect()
    }

    /// Removes every segment it made (their names; mapped memory stays valid until
    /// unmapped) and makes no more. A second shutdown does nothing. Names already
    /// unlinked through a handle are skipped.
    pub fn shutdown(&self) -> io::Result<()> {
        let paths = {
            let mut state = self.state();
            state.shut = true;
            std::mem::take(&mut state.paths)
        };
        let mut first_error = None;
        for path in paths {
            if let Err(e) = unlink_owned(&path) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for SharedMemoryManager {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
