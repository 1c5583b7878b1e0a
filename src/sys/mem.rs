//! Memory: a small page of counters shared with a child, the address-space limit.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use rustix::fs::{MemfdFlags, SealFlags, fstat, ftruncate, memfd_create};
use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};

/// A page of `u64` counters that two processes see at once: one writes, the other reads.
///
/// It is a memfd mapped shared; the descriptor travels to the child (`SCM_RIGHTS`),
/// which maps the same page. Counters are atomics, so no lock and no syscall is
/// needed to publish a value. The memfd is sealed at its size before it is shared: the
/// other process (a task in it that truncates the files it has open) cannot shrink the
/// page under this one's mapping, where a read would then fault (SIGBUS); a page that is
/// not sealed so is refused.
#[derive(Debug)]
pub(crate) struct SharedCounters {
    base: NonNull<AtomicU64>,
    slots: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is only accessed through `AtomicU64`s, which are themselves Send + Sync.
unsafe impl Send for SharedCounters {}
// SAFETY: as above: every access is an atomic operation.
unsafe impl Sync for SharedCounters {}

const PAGE: usize = 4096;

impl SharedCounters {
    /// Creates a zeroed page of `slots` counters (at most 512).
    pub(crate) fn create(slots: usize) -> io::Result<SharedCounters> {
        assert!(slots * 8 <= PAGE, "at most {} counters fit in one page", PAGE / 8);
        let fd = memfd_create("multiproc-counters", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        ftruncate(&fd, PAGE as u64)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        Self::map(fd, slots)
    }

    /// Maps a page received from another process.
    pub(crate) fn open(fd: OwnedFd, slots: usize) -> io::Result<SharedCounters> {
        let st = fstat(&fd)?;
        if (st.st_size as u64) < PAGE as u64 || slots * 8 > PAGE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the shared counter page is too small"));
        }
        if !rustix::fs::fcntl_get_seals(&fd).is_ok_and(|s| s.contains(SealFlags::SHRINK)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the shared counter page is not sealed at its size",
            ));
        }
        Self::map(fd, slots)
    }

    fn map(fd: OwnedFd, slots: usize) -> io::Result<SharedCounters> {
        // SAFETY: a fresh mapping chosen by the kernel (null hint) of one page of a memfd
        // that is at least one page long; it aliases no Rust object.
        let ptr =
            unsafe { mmap(std::ptr::null_mut(), PAGE, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, &fd, 0)? };
        let base = NonNull::new(ptr.cast::<AtomicU64>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(SharedCounters { base, slots, fd })
    }

    /// Counter number `i`.
    pub(crate) fn get(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.slots, "counter {i} out of {}", self.slots);
        // SAFETY: `i` is within the mapped page (checked), the page is page-aligned so every
        // slot is 8-aligned, and it stays mapped as long as `self` lives.
        unsafe { &*self.base.as_ptr().add(i) }
    }

    /// The memfd, to send to the other process.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedCounters {
    fn drop(&mut self) {
        // SAFETY: the page was mapped by `map` with this address and length, and no
        // reference into it outlives `self` (`get` borrows `self`).
        let _ = unsafe { munmap(self.base.as_ptr().cast(), PAGE) };
    }
}

/// A memfd holding `parts`, one after the other: a large message body that travels as a
/// descriptor instead of through the socket (one copy in, none out).
pub(crate) fn memfd_with(parts: &[&[u8]]) -> io::Result<OwnedFd> {
    let fd = memfd_create("multiproc-payload", MemfdFlags::CLOEXEC)?;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    ftruncate(&fd, total as u64)?;
    let mut at = 0u64;
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            match rustix::io::pwrite(&fd, rest, at) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "memfd write returned 0")),
                Ok(n) => {
                    rest = &rest[n..];
                    at += n as u64;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(fd)
}

/// A memfd kept mapped shared and writable, so a sender can fill it again and again: a
/// large body copied into pages that already exist costs one `memcpy`, where a fresh
/// memfd costs a page allocation (and its zeroing) for every 4 KiB as well.
#[derive(Debug)]
pub(crate) struct SpillBuf {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    cap: usize,
}

// SAFETY: the mapping is owned by this value and written only through `&mut self`.
unsafe impl Send for SpillBuf {}
// SAFETY: `&self` gives no access to the mapping's bytes.
unsafe impl Sync for SpillBuf {}

impl SpillBuf {
    /// A memfd of `cap` bytes (more than zero), mapped.
    pub(crate) fn create(cap: usize) -> io::Result<SpillBuf> {
        if cap == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty spill buffer"));
        }
        let fd = memfd_create("multiproc-payload", MemfdFlags::CLOEXEC)?;
        ftruncate(&fd, cap as u64)?;
        // SAFETY: a fresh shared mapping chosen by the kernel (null hint) of `cap` bytes of
        // a memfd that is `cap` bytes long; it aliases no Rust object and is unmapped only
        // by `drop`.
        let ptr =
            unsafe { mmap(std::ptr::null_mut(), cap, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, &fd, 0)? };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(SpillBuf { fd, ptr, cap })
    }

    /// Its size in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// Copies `parts`, one after the other, to the start of the buffer; returns their
    /// length. The caller makes sure they fit and that no reader is still looking.
    pub(crate) fn fill(&mut self, parts: &[&[u8]]) -> usize {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        assert!(total <= self.cap, "{total} bytes do not fit a spill buffer of {}", self.cap);
        // SAFETY: the mapping holds `cap` writable bytes for as long as `self` lives, and
        // `&mut self` makes this the only access to it from this process.
        let dst = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) };
        let mut at = 0;
        for part in parts {
            dst[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        total
    }

    /// The memfd, to send.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SpillBuf {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `create`, with its length; no borrow outlives `self`.
        let _ = unsafe { munmap(self.ptr.as_ptr().cast(), self.cap) };
    }
}

/// A whole file mapped read-only (for a body received as a memfd).
#[derive(Debug)]
pub(crate) struct Mapped {
    ptr: *const u8,
    len: usize,
}

// SAFETY: a read-only mapping owned by this value; reading it from any thread is fine.
unsafe impl Send for Mapped {}
// SAFETY: as above: this process never writes it (its sender refills it only once told
// that no reader is left, see `SpillBuf`).
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the first `len` bytes of `fd` (all of it with `None`), prefaulted. A file
    /// shorter than `len` is an error, not a mapping that faults when read.
    pub(crate) fn open(fd: &OwnedFd, len: Option<usize>) -> io::Result<Mapped> {
        let size = fstat(fd)?.st_size as u64;
        let len = match len {
            None => size as usize,
            Some(len) if len as u64 <= size => len,
            Some(len) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a body of {len} bytes announced in a memfd of {size}"),
                ));
            }
        };
        if len == 0 {
            return Ok(Mapped { ptr: std::ptr::null(), len: 0 });
        }
        // Shared, so a reused memfd's new contents show through a mapping that is kept.
        // SAFETY: a fresh read-only mapping of `len` bytes of a file that is `len`
        // bytes long; it aliases no Rust object and is unmapped only by `drop`.
        let ptr =
            unsafe { mmap(std::ptr::null_mut(), len, ProtFlags::READ, MapFlags::SHARED | MapFlags::POPULATE, fd, 0)? };
        Ok(Mapped { ptr: ptr.cast(), len })
    }

    /// Which file `fd` is and how long: (device, inode, size).
    pub(crate) fn identity(fd: &OwnedFd) -> io::Result<(u64, u64, u64)> {
        let st = fstat(fd)?;
        Ok((st.st_dev, st.st_ino, st.st_size as u64))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives (see `open`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in `open`, with its length; no borrow outlives `self`.
            let _ = unsafe { munmap(self.ptr as *mut _, self.len) };
        }
    }
}

/// Caps this process's address space at `bytes` (`RLIMIT_AS`): an allocation past it fails.
pub(crate) fn limit_address_space(bytes: u64) -> io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(Resource::As, Rlimit { current: Some(bytes), maximum: Some(bytes) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_memfd_body_maps_back_whole() {
        let fd = memfd_with(&[b"head", &[7u8; 100_000], b""]).unwrap();
        let m = Mapped::open(&fd, None).unwrap();
        assert_eq!(m.bytes().len(), 100_004);
        assert_eq!(&m.bytes()[..5], b"head\x07");
        let empty = memfd_with(&[]).unwrap();
        assert!(Mapped::open(&empty, None).unwrap().bytes().is_empty());
    }

    #[test]
    fn a_spill_buffer_is_filled_again_and_read_back_by_its_prefix() {
        let mut b = SpillBuf::create(1 << 20).unwrap();
        assert_eq!(b.fill(&[b"first", &[1u8; 1000]]), 1005);
        assert_eq!(b.fill(&[b"again"]), 5);
        let fd = b.fd().try_clone_to_owned().unwrap();
        let m = Mapped::open(&fd, Some(1005)).unwrap();
        assert_eq!(&m.bytes()[..6], b"again\x01");
        assert_eq!(m.bytes().len(), 1005);
        assert_eq!(Mapped::open(&fd, None).unwrap().bytes().len(), 1 << 20);
        assert!(Mapped::open(&fd, Some((1 << 20) + 1)).is_err());
    }

    #[test]
    fn two_mappings_of_one_page_see_each_other() {
        let a = SharedCounters::create(4).unwrap();
        let b = SharedCounters::open(a.fd().try_clone_to_owned().unwrap(), 4).unwrap();
        a.get(3).store(42, Ordering::Release);
        assert_eq!(b.get(3).load(Ordering::Acquire), 42);
        assert_eq!(b.get(0).load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_counter_page_cannot_be_shrunk_and_an_unsealed_one_is_refused() {
        let a = SharedCounters::create(4).unwrap();
        assert!(ftruncate(a.fd(), 0).is_err(), "sealed at its size");
        let unsealed = memfd_create("unsealed", MemfdFlags::CLOEXEC).unwrap();
        ftruncate(&unsealed, PAGE as u64).unwrap();
        let e = SharedCounters::open(unsealed, 4).unwrap_err();
        assert!(e.to_string().contains("not sealed"), "{e}");
    }
}
