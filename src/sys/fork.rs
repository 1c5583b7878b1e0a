//! The fork server's fork: a copy of this (single-threaded) process that is a child of
//! this process's *parent*, not of this process (`CLONE_PARENT`).
//!
//! A pool's fork-server template forks its workers, and those workers must be the pool's
//! children: the pool reaps them through pidfds and reads their exit status, and they
//! must outlive a template that dies (the pool restarts it). `fork()` cannot say that, so
//! this is `clone` called directly, which skips what the C library's `fork` does in the
//! child; the two things of it that matter are done by hand, as glibc's `fork` does them:
//!
//! - the thread's id in the C library's thread descriptor (used as the owner of robust
//!   and error-checking mutexes) is written by the kernel (`CLONE_CHILD_SETTID` at the
//!   address the kernel already clears at exit, `PR_GET_TID_ADDRESS`);
//! - the robust-mutex list, which the kernel resets in a new process, is registered
//!   again, so a robust mutex the child holds when it dies is recovered.
//!
//! Where it can, the new process is created directly in its cgroup (`clone3` with
//! `CLONE_INTO_CGROUP`), which spares its parent a move into it.
//!
//! Only for a single-threaded caller (the caller checks): no other thread can hold a
//! lock (the allocator's included) that the child would inherit held.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The robust-list head and the thread-id address of the calling thread.
struct ThreadBook {
    tid_address: usize,
    robust_head: usize,
    robust_len: usize,
}

fn thread_book() -> io::Result<ThreadBook> {
    let mut tid_address: usize = 0;
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer-sized value to the address given,
    // which is a live `usize`.
    if unsafe { libc::prctl(libc::PR_GET_TID_ADDRESS, &mut tid_address as *mut usize) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut robust_head: usize = 0;
    let mut robust_len: usize = 0;
    // SAFETY: get_robust_list(0, ...) writes the calling thread's list head and its
    // length to the two live locations given.
    let rc = unsafe {
        libc::syscall(libc::SYS_get_robust_list, 0, &mut robust_head as *mut usize, &mut robust_len as *mut usize)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ThreadBook { tid_address, robust_head, robust_len })
}

/// Forks this process as a sibling (a child of its parent), created inside the cgroup
/// whose directory is `into` if one is given and the kernel allows it. Returns
/// `Some((pid, in_cgroup))` in the caller and `None` in the new process, which has one
/// thread, this one. `in_cgroup` says whether the new process was created in `into`:
/// when not (no `clone3` here, or the cgroup refused), the caller's parent must move it,
/// which costs an RCU grace period (see `sys::clone`).
///
/// The caller must be single-threaded (see the module docs).
pub(crate) fn fork_sibling(into: Option<BorrowedFd<'_>>) -> io::Result<Option<(u32, bool)>> {
    let book = thread_book()?;
    let created = match into {
        // Any failure here (no clone3, a cgroup this process may not create in) has the
        // same answer: a plain fork, moved by the parent.
        Some(dir) if !super::clone::clone3_refused_before() => clone3_sibling(&book, dir).ok(),
        _ => None,
    };
    let (rc, in_cgroup) = match created {
        Some(rc) => (rc, true),
        None => (clone_sibling(&book)?, false),
    };
    if rc == 0 {
        // SAFETY: the head is this thread's own list (read above, inherited as is by
        // the copy); registering it again is what the C library's fork does.
        unsafe { libc::syscall(libc::SYS_set_robust_list, book.robust_head, book.robust_len) };
        return Ok(None);
    }
    Ok(Some((rc as u32, in_cgroup)))
}

const SIBLING_FLAGS: u64 = (libc::CLONE_PARENT | libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64;

/// `clone3` of a sibling inside the cgroup `dir`: 0 in the child, its pid in the caller.
fn clone3_sibling(book: &ThreadBook, dir: BorrowedFd<'_>) -> io::Result<i64> {
    let args = super::clone::CloneArgs {
        flags: SIBLING_FLAGS | super::clone::CLONE_INTO_CGROUP,
        child_tid: book.tid_address as u64,
        // With CLONE_PARENT the kernel wants 0 here: the new process's exit signal is
        // this process's own (SIGCHLD, to the common parent).
        exit_signal: 0,
        cgroup: dir.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: a fork-like clone3 (no CLONE_VM, no stack: the child continues on a copy of
    // this stack, in a copy of the address space); `args` is a valid `clone_args` of the
    // size passed. The caller is single-threaded, so no lock is held by another thread.
    // The child-tid address is the C library's own, written in the child's copy only.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, &args as *const super::clone::CloneArgs, size_of_val(&args)) };
    if rc < 0 {
        return super::clone::note(Err(io::Error::last_os_error())).map(i64::from);
    }
    Ok(rc)
}

/// A plain `clone` of a sibling: 0 in the child, its pid in the caller.
fn clone_sibling(book: &ThreadBook) -> io::Result<i64> {
    let flags = SIBLING_FLAGS | libc::SIGCHLD as u64;
    // SAFETY: as in `clone3_sibling`, by the older call; the argument order of the raw
    // call differs between architectures.
    #[cfg(target_arch = "x86_64")]
    let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, book.tid_address, 0usize) };
    #[cfg(not(target_arch = "x86_64"))]
    let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, book.tid_address) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}
