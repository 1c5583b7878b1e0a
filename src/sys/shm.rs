//! Shared memory: memfds, named POSIX segments, mappings, and plain-old-data access.
//!
//! A [`Mapping`] is a `MAP_SHARED` view of a descriptor; other processes map the same
//! descriptor, so its bytes change under us at any time. Every accessor here is
//! bounds- and alignment-checked, and only hands out types for which any bytes are a
//! valid value (atomics, [`Pod`]), so another process writing can make values wrong,
//! never undefined.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use rustix::fs::{MemfdFlags, Mode, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;

/// Plain old data: a `Copy` type with no pointers, valid for every bit pattern.
///
/// Such a value means the same in every process and can live in shared memory that
/// other processes write: [`Value`](crate::Value), [`Array`](crate::Array) and their raw
/// variants hold `Pod` types. Implemented for the integer and float types, and arrays
/// and tuples of `Pod` types.
///
/// # Safety
/// Implement it only for a type that (1) has no pointers or references (an address is
/// meaningless in another process), (2) is valid for any bit pattern of its size (no
/// `bool`, `char`, enums or `NonZero*`), and (3) has a stable layout (`#[repr(C)]` or
/// `#[repr(transparent)]` for structs), since another process of the same build reads it.
///
/// # Example
///
/// ```
/// use multiproc::{Pod, SyncError, Value};
///
/// /// Any `Pod` type can live in shared memory.
/// fn shared<T: Pod>(initial: T) -> Result<Value<T>, SyncError> {
///     Value::new(initial)
/// }
///
/// multiproc::init();
/// let point = shared((1.5f64, -2.0f64))?; // tuples and arrays of `Pod` types are `Pod`
/// let corners = shared([0u32; 4])?;
/// assert_eq!(point.get()?, (1.5, -2.0));
/// assert_eq!(corners.get()?, [0; 4]);
/// # Ok::<(), SyncError>(())
/// ```
pub unsafe trait Pod: Copy + Send + Sync + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: a primitive number: no pointers, every bit pattern valid.
        unsafe impl Pod for $t {}
    )* };
}
pod!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);
// SAFETY: an array of `Pod` has no padding and no pointers; every element is valid for any bits.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}
macro_rules! pod_tuple {
    ($($t:ident),*) => {
        // SAFETY: a tuple of `Pod` fields has no pointers; padding bytes may hold anything.
        unsafe impl<$($t: Pod),*> Pod for ($($t,)*) {}
    };
}
pod_tuple!(A);
pod_tuple!(A, B);
pod_tuple!(A, B, C);
pod_tuple!(A, B, C, D);

/// An anonymous shared-memory file of `len` bytes (`memfd_create`), sealed so that no
/// holder can shrink or grow it (a shrunk mapping would crash its other users).
pub(crate) fn memfd(name: &str, len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
    Ok(fd)
}

/// A memfd holding exactly `bytes`, sealed against any change (a read-only snapshot).
pub(crate) fn sealed_memfd_with(bytes: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create("multiproc-msg", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut done = 0;
    while done < bytes.len() {
        match rustix::io::write(&fd, &bytes[done..]) {
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL)?;
    Ok(fd)
}

/// Reads a whole sealed memfd made by [`sealed_memfd_with`] into `out`.
pub(crate) fn read_sealed(fd: BorrowedFd<'_>, out: &mut Vec<u8>) -> io::Result<()> {
    let seals = rustix::fs::fcntl_get_seals(fd)?;
    if !seals.contains(SealFlags::WRITE | SealFlags::SHRINK) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "message memory is not sealed"));
    }
    let len = size_of_fd(fd)?;
    out.clear();
    out.resize(len, 0);
    let mut done = 0;
    while done < len {
        match rustix::io::pread(fd, &mut out[done..], done as u64) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "message memory cut short")),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The size of the file behind `fd`.
pub(crate) fn size_of_fd(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let st = rustix::fs::fstat(fd)?;
    usize::try_from(st.st_size).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative size"))
}

/// Whether `fd` is sealed against resizing (true for our memfds, false for named segments).
pub(crate) fn is_size_sealed(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_get_seals(fd).is_ok_and(|s| s.contains(SealFlags::SHRINK | SealFlags::GROW))
}

/// Creates the named segment `name` (`/name` in `/dev/shm`), readable and writable by
/// its owner only; fails if it exists.
pub(crate) fn shm_create(name: &str, len: usize) -> io::Result<OwnedFd> {
    let fd = shm::open(name, shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR, Mode::RUSR | Mode::WUSR)?;
    if let Err(e) = rustix::fs::ftruncate(&fd, len as u64) {
        let _ = shm::unlink(name);
        return Err(e.into());
    }
    Ok(fd)
}

/// Opens the existing named segment `name`.
pub(crate) fn shm_open(name: &str) -> io::Result<OwnedFd> {
    Ok(shm::open(name, shm::OFlags::RDWR, Mode::empty())?)
}

/// Removes the name `name`; mappings and descriptors stay valid.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    Ok(shm::unlink(name)?)
}

/// `n` random bytes from the kernel, as lowercase hex.
pub(crate) fn random_hex(n: usize) -> io::Result<String> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match rustix::rand::getrandom(&mut buf[got..], rustix::rand::GetRandomFlags::empty()) {
            Ok(k) => got += k,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A shared mapping of a whole file; unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory valid until drop; all access goes through atomics,
// `Pod` copies or the robust mutex protocol, which are safe from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above: `&Mapping` only exposes atomics and bounds-checked copies.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, read-write and shared. `len` must not exceed
    /// the file's size (checked), or touching the tail would raise SIGBUS.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot map zero bytes"));
        }
        if size_of_fd(fd)? < len {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "shared memory smaller than expected"));
        }
        // SAFETY: a fresh mapping at an address the kernel chooses (null hint), of a file
        // at least `len` bytes long (checked above); it aliases no Rust object.
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd.as_fd(),
                0,
            )?
        };
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }

    /// The mapped length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn check(&self, offset: usize, size: usize, align: usize) -> usize {
        let end = offset.checked_add(size).expect("shared-memory offset overflows");
        assert!(end <= self.len, "shared-memory access {offset}..{end} outside a {}-byte mapping", self.len);
        let addr = self.ptr.as_ptr() as usize + offset;
        assert!(addr.is_multiple_of(align), "misaligned shared-memory access at offset {offset}");
        addr
    }

    /// The `AtomicU32` at `offset`.
    pub(crate) fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        let addr = self.check(offset, 4, 4);
        // SAFETY: in bounds and aligned (checked); any 4 bytes are a valid `AtomicU32`,
        // and atomics may be shared and written from anywhere. Lives as long as `self`.
        unsafe { &*(addr as *const AtomicU32) }
    }

    /// The `AtomicU64` at `offset`.
    pub(crate) fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        let addr = self.check(offset, 8, 8);
        // SAFETY: as for `atomic_u32`, with 8 bytes.
        unsafe { &*(addr as *const AtomicU64) }
    }

    /// Copies `src` into the mapping at `offset`.
    pub(crate) fn write_bytes(&self, offset: usize, src: &[u8]) {
        let addr = self.check(offset, src.len(), 1);
        // SAFETY: the destination is in bounds (checked) and cannot overlap `src`, a Rust
        // slice outside the mapping or a region of it the caller's protocol gives it alone.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), addr as *mut u8, src.len()) }
    }

    /// Copies bytes at `offset` out into `dst`.
    pub(crate) fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        let addr = self.check(offset, dst.len(), 1);
        // SAFETY: in bounds (checked); bytes have no invalid values, so whatever another
        // process wrote is a valid `u8`; `dst` is a distinct Rust buffer.
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, dst.as_mut_ptr(), dst.len()) }
    }

    /// Reads the `T` at `offset` (a volatile copy: other processes may write it).
    pub(crate) fn read_pod<T: Pod>(&self, offset: usize) -> T {
        let addr = self.check(offset, size_of::<T>(), align_of::<T>());
        // SAFETY: in bounds and aligned (checked); `T: Pod` is valid for any bits, so even
        // a torn read of a concurrent write is a valid `T`.
        unsafe { std::ptr::read_volatile(addr as *const T) }
    }

    /// Writes `value` at `offset` (volatile).
    pub(crate) fn write_pod<T: Pod>(&self, offset: usize, value: T) {
        let addr = self.check(offset, size_of::<T>(), align_of::<T>());
        // SAFETY: in bounds and aligned (checked); `T: Pod` has no destructor to skip and
        // no pointers; no Rust reference into this memory exists outside a held lock guard.
        unsafe { std::ptr::write_volatile(addr as *mut T, value) }
    }

    /// The raw address of `offset`, for the mutex and byte-slice wrappers of this layer.
    pub(crate) fn addr(&self, offset: usize, size: usize, align: usize) -> *mut u8 {
        self.check(offset, size, align) as *mut u8
    }

    /// The whole mapping as bytes. Other processes may write these bytes at any time:
    /// reads can see any mix of old and new bytes (still valid `u8`s).
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes for the lifetime of `self`; `u8` has
        // no invalid values, and concurrent writers are other processes (or `&mut` users of
        // `bytes_mut`, excluded by the borrow of `self`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The whole mapping as mutable bytes; `&mut self` keeps this process's other views away.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `bytes`; `&mut self` makes this the only view in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and no reference derived
        // from them outlives `self` (they all borrow it).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_one_memfd_see_each_other() {
        let fd = memfd("test", 4096).unwrap();
        let a = Mapping::new(fd.as_fd(), 4096).unwrap();
        let b = Mapping::new(fd.as_fd(), 4096).unwrap();
        a.write_pod::<u64>(8, 42);
        assert_eq!(b.read_pod::<u64>(8), 42);
        a.write_bytes(100, b"hi");
        let mut out = [0u8; 2];
        b.read_bytes(100, &mut out);
        assert_eq!(&out, b"hi");
        assert!(is_size_sealed(fd.as_fd()));
        assert!(rustix::fs::ftruncate(&fd, 10).is_err());
    }

    #[test]
    fn mapping_more_than_the_file_is_refused() {
        let fd = memfd("test", 4096).unwrap();
        assert!(Mapping::new(fd.as_fd(), 8192).is_err());
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn out_of_bounds_is_a_panic_not_ub() {
        let fd = memfd("test", 4096).unwrap();
        let a = Mapping::new(fd.as_fd(), 4096).unwrap();
        a.read_pod::<u64>(4092);
    }

    #[test]
    fn sealed_message_memory_round_trips() {
        let fd = sealed_memfd_with(b"payload").unwrap();
        let mut out = Vec::new();
        read_sealed(fd.as_fd(), &mut out).unwrap();
        assert_eq!(out, b"payload");
        assert!(rustix::io::write(&fd, b"x").is_err());
    }
}
