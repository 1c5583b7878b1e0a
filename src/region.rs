//! A shared-memory region that travels: a sealed memfd, mapped, whose descriptor rides
//! along (SCM_RIGHTS) when the handle holding it is serialized into a multiproc message.
//!
//! Every region starts with a small header (magic, what it holds, a layout tag) that the
//! receiving side checks, so a descriptor that is not what the type expects is a clear
//! decode error, not a crash.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sys::shm::{self, Mapping};
use crate::wire::fds;

const MAGIC: u64 = u64::from_le_bytes(*b"MPREGN01");
/// A header word: 1 if a `Value`/`Array` region holds its own lock (a robust mutex at
/// `sync::MUTEX_AT`), which may then also travel as a `Lock` (its `get_lock()`).
const LOCK_INSIDE_AT: usize = 12;

/// Bytes reserved at the start of every region for its header.
pub(crate) const HEADER: usize = 64;

/// What a region holds: checked when a handle arrives in another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Queue = 1,
    Lock = 2,
    RLock = 3,
    Semaphore = 4,
    Event = 5,
    Condition = 6,
    Barrier = 7,
    Value = 8,
    Array = 9,
}

/// A mapped memfd and its descriptor.
pub(crate) struct Region {
    fd: OwnedFd,
    map: Mapping,
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region").field("len", &self.map.len()).finish()
    }
}

impl Region {
    /// A fresh zeroed region of `len` bytes (at least the header) holding `kind`; `tag`
    /// describes its layout (e.g. the element type's size) and is checked on arrival.
    pub(crate) fn create(kind: Kind, tag: u64, len: usize) -> io::Result<Region> {
        let len = len.max(HEADER).next_multiple_of(page_size());
        let fd = shm::memfd(&format!("multiproc-{kind:?}"), len)?;
        let map = Mapping::new(fd.as_fd(), len)?;
        map.atomic_u64(0).store(MAGIC, std::sync::atomic::Ordering::Relaxed);
        map.atomic_u32(8).store(kind as u32, std::sync::atomic::Ordering::Relaxed);
        map.atomic_u64(16).store(tag, std::sync::atomic::Ordering::Relaxed);
        Ok(Region { fd, map })
    }

    /// Maps a region received from another process, checking it holds `kind` with `tag`.
    pub(crate) fn open(fd: OwnedFd, kind: Kind, tag: u64) -> Result<Region, String> {
        if !shm::is_size_sealed(fd.as_fd()) {
            return Err(format!("the descriptor for a {kind:?} is not a sealed multiproc region"));
        }
        let len = shm::size_of_fd(fd.as_fd()).map_err(|e| e.to_string())?;
        if len < HEADER {
            return Err(format!("the shared memory for a {kind:?} is only {len} bytes"));
        }
        let map = Mapping::new(fd.as_fd(), len).map_err(|e| e.to_string())?;
        let ord = std::sync::atomic::Ordering::Relaxed;
        if map.atomic_u64(0).load(ord) != MAGIC {
            return Err(format!("the shared memory sent for a {kind:?} is not a multiproc region"));
        }
        let found = map.atomic_u32(8).load(ord);
        let lock_inside =
            map.atomic_u32(LOCK_INSIDE_AT).load(ord) == 1 && [Kind::Value as u32, Kind::Array as u32].contains(&found);
        if kind == Kind::Lock && lock_inside {
            return Ok(Region { fd, map });
        }
        if found != kind as u32 {
            return Err(format!("expected shared memory for a {kind:?}, got region kind {found}"));
        }
        let found_tag = map.atomic_u64(16).load(ord);
        if found_tag != tag {
            return Err(format!(
                "the {kind:?} was made for another element type (layout {found_tag:#x}, expected {tag:#x})"
            ));
        }
        Ok(Region { fd, map })
    }

    /// Records that this `Value`/`Array` region holds its own lock, which may travel as
    /// a `Lock`. Only its creator calls this, after initialising that lock.
    pub(crate) fn mark_lock_inside(&self) {
        self.map.atomic_u32(LOCK_INSIDE_AT).store(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The mapping.
    pub(crate) fn map(&self) -> &Mapping {
        &self.map
    }

    /// The descriptor.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Serializes a reference to this region (its descriptor travels with the message).
    pub(crate) fn serialize_fd<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index = fds::attach(self.fd.as_fd()).map_err(serde::ser::Error::custom)?;
        index.serialize(s)
    }

    /// Reads what [`serialize_fd`](Self::serialize_fd) wrote and maps it.
    pub(crate) fn deserialize_fd<'de, D: Deserializer<'de>>(d: D, kind: Kind, tag: u64) -> Result<Region, D::Error> {
        let index = u32::deserialize(d)?;
        Region::open_index(index, kind, tag).map_err(D::Error::custom)
    }

    /// Maps the region whose descriptor arrived as `index` of the message being read.
    pub(crate) fn open_index(index: u32, kind: Kind, tag: u64) -> Result<Region, String> {
        let fd = fds::take(index)?;
        Region::open(fd, kind, tag)
    }
}

/// The system's page size.
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}

/// A layout tag for element type `T`: its size and alignment, and a hash of its name.
pub(crate) fn type_tag<T>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::any::type_name::<T>().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    (h & 0xffff_ffff_0000) ^ ((size_of::<T>() as u64) << 48) ^ (align_of::<T>() as u64)
}
