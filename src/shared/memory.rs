use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, Once};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sys::shm::{self, Mapping};
use crate::wire::fds;

/// A named block of shared memory (`/dev/shm/<name>`), like Python's
/// `multiprocessing.shared_memory.SharedMemory`: raw bytes that every process attached
/// to it reads and writes in place, with no copy.
///
/// [`create`](SharedMemory::create) makes a segment with an unguessable name, readable
/// and writable by its owner (this user) only. Other processes get it by receiving the
/// handle (its descriptor travels with it, so it works even after the name is gone) or
/// by [`attach`](SharedMemory::attach)ing the name. The creating handle removes the name
/// when dropped (or when the process exits); [`unlink`](SharedMemory::unlink) does it
/// earlier. The memory itself lives until the last mapping goes.
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

/// Names this process created and has not unlinked yet; removed at exit.
fn owned_names() -> std::sync::MutexGuard<'static, Vec<String>> {
    static NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    NAMES.lock().unwrap_or_else(|e| e.into_inner())
}

extern "C" fn unlink_owned_at_exit() {
    for name in owned_names().drain(..) {
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
    pub fn create(size: usize) -> io::Result<SharedMemory> {
        let name = format!("mp-{}", shm::random_hex(12)?);
        SharedMemory::create_named(&name, size)
    }

    /// A new segment named `name` (it must not exist) of `size` bytes.
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
        owned_names().push(path.clone());
        Ok(SharedMemory { name: path, fd, map, owner: true })
    }

    /// Attaches the existing segment `name` (with or without its leading `/`).
    pub fn attach(name: &str) -> io::Result<SharedMemory> {
        let path = path_name(name)?;
        let fd = shm::shm_open(&path)?;
        let size = shm::size_of_fd(fd.as_fd())?;
        let map = Mapping::new(fd.as_fd(), size)?;
        Ok(SharedMemory { name: path, fd, map, owner: false })
    }

    /// Another handle to the same memory (not the owner: dropping it unlinks nothing).
    pub fn try_clone(&self) -> io::Result<SharedMemory> {
        let fd = self.fd.try_clone()?;
        let map = Mapping::new(fd.as_fd(), self.map.len())?;
        Ok(SharedMemory { name: self.name.clone(), fd, map, owner: false })
    }

    /// The segment's name, without the leading `/` (what [`attach`](Self::attach) takes).
    pub fn name(&self) -> &str {
        self.name.strip_prefix('/').unwrap_or(&self.name)
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.map.len()
    }

    /// The bytes, in place.
    pub fn as_slice(&self) -> &[u8] {
        self.map.bytes()
    }

    /// The bytes, in place, for writing.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.map.bytes_mut()
    }

    /// Removes the name now, so no one else can attach it; existing handles keep working.
    /// Removing a name that is already gone is not an error.
    pub fn unlink(&self) -> io::Result<()> {
        owned_names().retain(|n| n != &self.name);
        match shm::shm_unlink(&self.name) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if self.owner {
            let mut names = owned_names();
            if let Some(i) = names.iter().position(|n| n == &self.name) {
                names.swap_remove(i);
                let _ = shm::shm_unlink(&self.name);
            }
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
