//! Robust, process-shared pthread mutexes living in shared memory.
//!
//! `PTHREAD_MUTEX_ROBUST` + `PTHREAD_PROCESS_SHARED`: when a thread dies holding one
//! (its whole process killed, say), the kernel marks it, and the next `lock` returns
//! `EOWNERDEAD` instead of blocking forever. We then mark it consistent at once and
//! report [`Acquired::OwnerDied`], so the caller can repair what it protects.

use std::io;
use std::time::Duration;

use super::shm::Mapping;

/// Bytes a mutex takes in shared memory.
pub(crate) const MUTEX_SIZE: usize = size_of::<libc::pthread_mutex_t>();
/// Alignment it needs.
pub(crate) const MUTEX_ALIGN: usize = align_of::<libc::pthread_mutex_t>();

/// How a lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The usual way.
    Clean,
    /// The previous owner died holding it; the caller holds it now.
    OwnerDied,
}

/// Why a lock was not obtained.
#[derive(Debug)]
pub(crate) enum LockFailure {
    /// The timeout passed (or, for `try_lock`, it is held).
    TimedOut,
    /// This thread already holds this (non-recursive) mutex.
    WouldDeadlock,
    /// Anything else the C library reported.
    Io(io::Error),
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn mutex_ptr(map: &Mapping, offset: usize) -> *mut libc::pthread_mutex_t {
    map.addr(offset, MUTEX_SIZE, MUTEX_ALIGN).cast()
}

/// Initializes a robust, process-shared mutex at `offset` (error-checking, or recursive).
/// Only the creator of fresh shared memory calls this, before sharing it.
pub(crate) fn init(map: &Mapping, offset: usize, recursive: bool) -> io::Result<()> {
    let m = mutex_ptr(map, offset);
    let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: `attr` is a local the pthread_mutexattr functions initialise and read; `m`
    // points to MUTEX_SIZE aligned bytes of our mapping (checked by `addr`), not yet
    // shared with anyone, which pthread_mutex_init may overwrite.
    unsafe {
        let r = libc::pthread_mutexattr_init(attr.as_mut_ptr());
        if r != 0 {
            return Err(errno(r));
        }
        let kind = if recursive { libc::PTHREAD_MUTEX_RECURSIVE } else { libc::PTHREAD_MUTEX_ERRORCHECK };
        let mut r = libc::pthread_mutexattr_settype(attr.as_mut_ptr(), kind);
        if r == 0 {
            r = libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
        }
        if r == 0 {
            r = libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST);
        }
        if r == 0 {
            r = libc::pthread_mutex_init(m, attr.as_ptr());
        }
        libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
        if r != 0 {
            return Err(errno(r));
        }
    }
    Ok(())
}

fn outcome(map: &Mapping, offset: usize, r: i32) -> Result<Acquired, LockFailure> {
    match r {
        0 => Ok(Acquired::Clean),
        libc::EOWNERDEAD => {
            // SAFETY: we hold the mutex (EOWNERDEAD hands it to us); marking it consistent
            // is what makes it usable again; `mutex_ptr` checks bounds and alignment.
            let c = unsafe { libc::pthread_mutex_consistent(mutex_ptr(map, offset)) };
            if c != 0 {
                return Err(LockFailure::Io(errno(c)));
            }
            Ok(Acquired::OwnerDied)
        }
        libc::ETIMEDOUT | libc::EBUSY => Err(LockFailure::TimedOut),
        libc::EDEADLK => Err(LockFailure::WouldDeadlock),
        e => Err(LockFailure::Io(errno(e))),
    }
}

/// Locks the mutex at `offset`, waiting at most `timeout` (`None`: forever).
pub(crate) fn lock(map: &Mapping, offset: usize, timeout: Option<Duration>) -> Result<Acquired, LockFailure> {
    let m = mutex_ptr(map, offset);
    let r = match timeout {
        None => {
            // SAFETY: `m` is an initialised process-shared mutex in a live mapping.
            unsafe { libc::pthread_mutex_lock(m) }
        }
        Some(t) => {
            // pthread_mutex_timedlock takes an absolute CLOCK_REALTIME deadline.
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
            let mut sec = now.tv_sec.saturating_add(t.as_secs().min(i64::MAX as u64 / 2) as i64);
            let mut nsec = now.tv_nsec as i64 + t.subsec_nanos() as i64;
            if nsec >= 1_000_000_000 {
                sec = sec.saturating_add(1);
                nsec -= 1_000_000_000;
            }
            let abs = libc::timespec { tv_sec: sec as _, tv_nsec: nsec as _ };
            // SAFETY: as above; `abs` is a valid timespec on our stack.
            unsafe { libc::pthread_mutex_timedlock(m, &abs) }
        }
    };
    outcome(map, offset, r)
}

/// Locks the mutex at `offset` if it is free.
pub(crate) fn try_lock(map: &Mapping, offset: usize) -> Result<Acquired, LockFailure> {
    // SAFETY: `m` is an initialised process-shared mutex in a live mapping.
    let r = unsafe { libc::pthread_mutex_trylock(mutex_ptr(map, offset)) };
    outcome(map, offset, r)
}

/// Where the C library keeps a mutex's lock word: the futex the kernel's robust-mutex
/// protocol reads, holding the owner's thread id (0 when free). Fixed by each libc's ABI.
#[cfg(not(target_env = "musl"))]
const LOCK_WORD_AT: usize = 0; // glibc: `__data.__lock`, the struct's first field
#[cfg(target_env = "musl")]
const LOCK_WORD_AT: usize = 4; // musl: `_m_lock`, after `_m_type`
/// The owner-thread bits of a robust futex word (`FUTEX_TID_MASK`).
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// Whether some thread holds the mutex at `offset` now, without taking it. One whose
/// owner died reads as free: the kernel clears the owner bits, and the next locker is
/// told `OwnerDied`.
pub(crate) fn is_locked(map: &Mapping, offset: usize) -> bool {
    map.atomic_u32(offset + LOCK_WORD_AT).load(std::sync::atomic::Ordering::SeqCst) & FUTEX_TID_MASK != 0
}

/// Unlocks the mutex at `offset`; fails (EPERM) if this thread does not hold it.
pub(crate) fn unlock(map: &Mapping, offset: usize) -> io::Result<()> {
    // SAFETY: `m` is an initialised process-shared mutex in a live mapping; an
    // error-checking or recursive mutex refuses an unlock by a non-owner with EPERM.
    let r = unsafe { libc::pthread_mutex_unlock(mutex_ptr(map, offset)) };
    if r == 0 { Ok(()) } else { Err(errno(r)) }
}

/// A `&mut` view of `len` `T`s at `offset`, for a caller holding the mutex that guards
/// them. `proof` is that caller's lock guard, borrowed mutably for as long as the view
/// lives, so no second view can exist in this process; the mutex excludes other processes.
pub(crate) fn guarded_slice<'g, T: super::shm::Pod, P>(
    map: &'g Mapping,
    offset: usize,
    len: usize,
    proof: &'g mut P,
) -> &'g mut [T] {
    let _ = proof;
    let bytes = len.checked_mul(size_of::<T>()).expect("slice size overflows");
    let p = map.addr(offset, bytes, align_of::<T>().max(1));
    // SAFETY: `addr` checked bounds and alignment; `T: Pod` is valid for any bytes; the
    // caller holds the mutex guarding this region (its guard is the `proof` borrow), so
    // nothing else reads or writes it while this `&mut` lives.
    unsafe { std::slice::from_raw_parts_mut(p.cast::<T>(), len) }
}

/// A shared view of `len` `T`s at `offset`, for a caller holding the mutex that guards
/// them (`proof` is its guard); see [`guarded_slice`].
pub(crate) fn guarded_slice_ref<'g, T: super::shm::Pod, P>(
    map: &'g Mapping,
    offset: usize,
    len: usize,
    proof: &'g P,
) -> &'g [T] {
    let _ = proof;
    let bytes = len.checked_mul(size_of::<T>()).expect("slice size overflows");
    let p = map.addr(offset, bytes, align_of::<T>().max(1));
    // SAFETY: as for `guarded_slice`: in bounds, aligned, any bytes valid, and the held
    // mutex keeps writers out while the guard (borrowed by `proof`) lives.
    unsafe { std::slice::from_raw_parts(p.cast::<T>(), len) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::shm::memfd;
    use std::os::fd::AsFd;

    #[test]
    fn a_thread_dying_with_the_lock_makes_the_next_locker_told() {
        let fd = memfd("m", 4096).unwrap();
        let map = std::sync::Arc::new(Mapping::new(fd.as_fd(), 4096).unwrap());
        init(&map, 0, false).unwrap();
        let m2 = map.clone();
        std::thread::spawn(move || {
            assert_eq!(lock(&m2, 0, None).unwrap(), Acquired::Clean);
        })
        .join()
        .unwrap();
        assert!(!is_locked(&map, 0), "a dead owner's lock reads as free");
        assert_eq!(lock(&map, 0, Some(Duration::from_secs(5))).unwrap(), Acquired::OwnerDied);
        assert!(is_locked(&map, 0));
        assert!(matches!(lock(&map, 0, None), Err(LockFailure::WouldDeadlock)));
        unlock(&map, 0).unwrap();
        assert!(!is_locked(&map, 0));
        assert_eq!(try_lock(&map, 0).unwrap(), Acquired::Clean);
        unlock(&map, 0).unwrap();
        assert!(unlock(&map, 0).is_err());
    }
}
