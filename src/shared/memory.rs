use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, Once};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sys::shm::{self, Mapping};
use crate::sys::unlinker::Unlinker;
use crate::wire::fds;

/// A named block of shared memory (`/dev/shm/<name>`), like Python's
/// `multiprocessing.shared_memory.SharedMemory`: raw bytes that every process attached
/// to it reads and writes in place, with no copy.
///
/// [`create`](SharedMemory::create) makes a segment with an unguessable name, readable
/// and writable by its owner (this user) only. Other processes get it by receiving the
/// handle (its descriptor travels with it, so it works even after the name is gone) or
/// by [`attach`](SharedMemory::attach)ing the name. The creating handle removes the name
/// when dropped, or when its process ends, however it ends: at a normal exit an exit hook
/// does it, and after a SIGKILL a small watcher process (started with the process's first
/// segment, ended with it, like Python's resource tracker) does.
/// [`unlink`](SharedMemory::unlink) removes it earlier. The memory itself lives until the
/// last mapping goes.
///
/// The bytes can change under you whenever another process writes them: coordinate
/// with a [`Lock`](crate::Lock) or another primitive.
///
/// ```
/// use multiproc::{Process, SharedMemory};
///
/// fn shout(mut shm: SharedMemory) {
///     shm.as_mut_slice()[..5].make_ascii_uppercase();
/// }
///
/// multiproc::init();
/// let mut shm = SharedMemory::create(4096)?;
/// shm.as_mut_slice()[..5].copy_from_slice(b"hello");
/// let mut p = Process::new(shout, shm.try_clone()?);
/// p.start()?;
/// p.join()?;
/// assert_eq!(&shm.as_slice()[..5], b"HELLO");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedMemory {
    name: String,
    fd: OwnedFd,
    map: Mapping,
    owner: bool,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory").field("name", &self.name).field("size", &self.size()).finish()
    }
}

/// The names this process created and has not unlinked yet, removed at exit; and the
/// watcher that removes them if this process ends without running its exit hooks.
struct Owned {
    /// Each name with its slot in the watcher's table.
    names: Vec<(String, usize)>,
    free: Vec<usize>,
    slots: usize,
    watcher: Option<Unlinker>,
    tried: bool,
}

fn owned() -> std::sync::MutexGuard<'static, Owned> {
    static OWNED: Mutex<Owned> =
        Mutex::new(Owned { names: Vec::new(), free: Vec::new(), slots: 0, watcher: None, tried: false });
    OWNED.lock().unwrap_or_else(|e| e.into_inner())
}

impl Owned {
    /// Adds `path` (`/name`), starting the watcher with the first one. Without a watcher
    /// (it could not start) the name is still removed on drop and at a normal exit.
    fn track(&mut self, path: &str) {
        if !self.tried {
            self.tried = true;
            self.watcher = Unlinker::start().ok();
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots += 1;
            self.slots - 1
        });
        if let Some(w) = &self.watcher {
            let _ = w.record(slot, &format!("/dev/shm{path}"));
        }
        self.names.push((path.to_string(), slot));
    }

    /// Removes `path`; whether this process still owned it.
    fn untrack(&mut self, path: &str) -> bool {
        let Some(i) = self.names.iter().position(|(n, _)| n == path) else { return false };
        let (_, slot) = self.names.swap_remove(i);
        if let Some(w) = &self.watcher {
            let _ = w.clear(slot);
        }
        self.free.push(slot);
        true
    }
}

extern "C" fn unlink_owned_at_exit() {
    let mut owned = owned();
    while let Some((name, _)) = owned.names.last().cloned() {
        owned.untrack(&name);
        let _ = shm::shm_unlink(&name);
    }
}

fn path_name(name: &str) -> io::Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() || bare.contains('/') || bare.len() > 250 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{name}` is not a valid shared-memory name (non-empty, no `/`, at most 250 bytes)"),
        ));
    }
    Ok(format!("/{bare}"))
}

impl SharedMemory {
    /// A new segment of `size` bytes (zeroed) with a random name.
    ///
    /// ```
    /// multiproc::init();
    /// let mut shm = multiproc::SharedMemory::create(4096)?;
    /// shm.as_mut_slice()[0] = 1;
    /// assert!(shm.size() >= 4096);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(size: usize) -> io::Result<SharedMemory> {
        let name = format!("mp-{}", shm::random_hex(12)?);
        SharedMemory::create_named(&name, size)
    }

    /// A new segment named `name` (it must not exist) of `size` bytes.
    ///
    /// ```
    /// multiproc::init();
    /// let name = format!("doc-example-{}", std::process::id());
    /// let shm = multiproc::SharedMemory::create_named(&name, 64)?;
    /// assert_eq!(shm.name(), name);
    /// shm.unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_named(name: &str, size: usize) -> io::Result<SharedMemory> {
        if size == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a shared-memory segment needs a size above 0"));
        }
        let path = path_name(name)?;
        let fd = shm::shm_create(&path, size)?;
        let map = match Mapping::new(fd.as_fd(), size) {
            Ok(m) => m,
            Err(e) => {
                let _ = shm::shm_unlink(&path);
                return Err(e);
            }
        };
        static AT_EXIT: Once = Once::new();
        AT_EXIT.call_once(|| crate::sys::proc::at_exit(unlink_owned_at_exit));
        owned().track(&path);
        Ok(SharedMemory { name: path, fd, map, owner: true })
    }

    /// Attaches the existing segment `name` (with or without its leading `/`).
    ///
    /// ```
    /// multiproc::init();
    /// let name = format!("doc-attach-{}", std::process::id());
    /// let mut a = multiproc::SharedMemory::create_named(&name, 64)?;
    /// a.as_mut_slice()[..2].copy_from_slice(b"hi");
    /// let b = multiproc::SharedMemory::attach(&name)?;
    /// assert_eq!(&b.as_slice()[..2], b"hi");
    /// a.unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attach(name: &str) -> io::Result<SharedMemory> {
        let path = path_name(name)?;
        let fd = shm::shm_open(&path)?;
        let size = shm::size_of_fd(fd.as_fd())?;
        let map = Mapping::new(fd.as_fd(), size)?;
        Ok(SharedMemory { name: path, fd, map, owner: false })
    }

    /// Another handle to the same memory (not the owner: dropping it unlinks nothing).
    ///
    /// ```
    /// multiproc::init();
    /// let mut a = multiproc::SharedMemory::create(16)?;
    /// let b = a.try_clone()?;
    /// a.as_mut_slice()[0] = 9;
    /// assert_eq!(b.as_slice()[0], 9); // the same memory
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_clone(&self) -> io::Result<SharedMemory> {
        let fd = self.fd.try_clone()?;
        let map = Mapping::new(fd.as_fd(), self.map.len())?;
        Ok(SharedMemory { name: self.name.clone(), fd, map, owner: false })
    }

    /// The segment's name, without the leading `/` (what [`attach`](Self::attach) takes).
    ///
    /// ```
    /// multiproc::init();
    /// let shm = multiproc::SharedMemory::create(16)?;
    /// println!("segment {}", shm.name());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(&self) -> &str {
        self.name.strip_prefix('/').unwrap_or(&self.name)
    }

    /// Its size in bytes.
    ///
    /// ```
    /// multiproc::init();
    /// assert!(multiproc::SharedMemory::create(100)?.size() >= 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn size(&self) -> usize {
        self.map.len()
    }

    /// The bytes, in place.
    ///
    /// ```
    /// multiproc::init();
    /// let shm = multiproc::SharedMemory::create(16)?;
    /// assert!(shm.as_slice().iter().all(|&b| b == 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn as_slice(&self) -> &[u8] {
        self.map.bytes()
    }

    /// The bytes, in place, for writing.
    ///
    /// ```
    /// multiproc::init();
    /// let mut shm = multiproc::SharedMemory::create(16)?;
    /// shm.as_mut_slice().fill(7);
    /// assert_eq!(shm.as_slice()[15], 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.map.bytes_mut()
    }

    /// Removes the name now, so no one else can attach it; existing handles keep working.
    /// Removing a name that is already gone is not an error.
    ///
    /// ```
    /// multiproc::init();
    /// let name = format!("doc-unlink-{}", std::process::id());
    /// let shm = multiproc::SharedMemory::create_named(&name, 16)?;
    /// shm.unlink()?; // the name is gone; the mapping lives on
    /// assert!(multiproc::SharedMemory::attach(&name).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unlink(&self) -> io::Result<()> {
        owned().untrack(&self.name);
        match shm::shm_unlink(&self.name) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl SharedMemory {
    /// The mapping, for the types built on a segment (`ShareableList`).
    pub(crate) fn map(&self) -> &Mapping {
        &self.map
    }

    /// Hands the name to a [`SharedMemoryManager`](crate::SharedMemoryManager): this
    /// handle stops being the owner (dropping it unlinks nothing), while the name stays
    /// recorded for the exit hook and the watcher until [`unlink_owned`] removes it.
    pub(crate) fn give_up_ownership(&mut self) {
        self.owner = false;
    }

    /// The name with its leading `/`, as recorded.
    pub(crate) fn path(&self) -> &str {
        &self.name
    }
}

/// Unlinks `path` (`/name`) if this process still owns it (created it and has not
/// unlinked it since); whether it did.
pub(crate) fn unlink_owned(path: &str) -> io::Result<bool> {
    if !owned().untrack(path) {
        return Ok(false);
    }
    match shm::shm_unlink(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if self.owner && owned().untrack(&self.name) {
            let _ = shm::shm_unlink(&self.name);
        }
    }
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index = fds::attach(self.fd.as_fd()).map_err(serde::ser::Error::custom)?;
        (&self.name, index).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (name, index) = <(String, u32)>::deserialize(d)?;
        let fd = fds::take(index).map_err(D::Error::custom)?;
        let size = shm::size_of_fd(fd.as_fd()).map_err(D::Error::custom)?;
        let map = Mapping::new(fd.as_fd(), size).map_err(D::Error::custom)?;
        Ok(SharedMemory { name, fd, map, owner: false })
    }
}
