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
//! Only for a single-threaded caller (the caller checks): no other thread can hold a
//! lock (the allocator's included) that the child would inherit held.

use std::io;

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

/// Forks this process as a sibling (a child of its parent). Returns `Some(pid)` in the
/// caller and `None` in the new process, which has one thread, this one.
///
/// The caller must be single-threaded (see the module docs).
pub(crate) fn fork_sibling() -> io::Result<Option<u32>> {
    let book = thread_book()?;
    let flags = (libc::CLONE_PARENT | libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;
    // SAFETY: a fork-like clone (no new stack: the child continues on a copy of this
    // one, in a copy of the address space). The caller is single-threaded, so no lock is
    // held by another thread. The child-tid address is the C library's own, which the
    // kernel is already told of; it is written in the child's copy only. The argument
    // order of the raw call differs between architectures.
    #[cfg(target_arch = "x86_64")]
    let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, book.tid_address, 0usize) };
    #[cfg(not(target_arch = "x86_64"))]
    let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, book.tid_address) };
    match rc {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // SAFETY: the head is this thread's own list (read above, inherited as is by
            // the copy); registering it again is what the C library's fork does.
            unsafe { libc::syscall(libc::SYS_set_robust_list, book.robust_head, book.robust_len) };
            Ok(None)
        }
        pid => Ok(Some(pid as u32)),
    }
}
