//! Creating a process directly inside a cgroup with `clone3(CLONE_INTO_CGROUP)` (Linux 5.7).
//!
//! Moving a running process into a cgroup (a write of its pid to `cgroup.procs`) takes the
//! kernel's global `cgroup_threadgroup_rwsem` for writing, which waits for an RCU grace
//! period when no other move happened in the last few: about 10 ms, on the path of every
//! contained child's start. A process created inside its cgroup takes that lock only for
//! reading: no wait. Two ways here:
//!
//! - [`spawn_into`]: a child that execs a program, created like `posix_spawn` does it
//!   (`CLONE_VM | CLONE_VFORK`: the parent's page tables are not copied) on a small stack
//!   of its own, in the cgroup. x86_64 only (it needs a few instructions of assembly);
//!   elsewhere it answers [`Unsupported`](std::io::ErrorKind::Unsupported) and the caller
//!   spawns and moves the child as before.
//! - [`fork_raw`]: a fork by a raw system call, optionally into a cgroup, for the crate's
//!   helper processes (the containment guard, the shared-memory unlinker).
//!
//! Where a seccomp filter refuses `clone3` (some container runtimes answer `ENOSYS`),
//! both fail with that error and the callers fall back to a move.

use std::ffi::{CStr, c_char, c_int};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// `struct clone_args` of `clone3(2)`, up to `cgroup` (its size is the version).
#[repr(C)]
#[derive(Default)]
pub(super) struct CloneArgs {
    pub(super) flags: u64,
    pub(super) pidfd: u64,
    pub(super) child_tid: u64,
    pub(super) parent_tid: u64,
    pub(super) exit_signal: u64,
    pub(super) stack: u64,
    pub(super) stack_size: u64,
    pub(super) tls: u64,
    pub(super) set_tid: u64,
    pub(super) set_tid_size: u64,
    pub(super) cgroup: u64,
}

pub(super) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Set once `clone3` was refused as missing or forbidden: later calls skip it.
static NO_CLONE3: AtomicBool = AtomicBool::new(false);

/// Whether `e` says that `clone3` itself is unavailable here (not that this call was wrong).
pub(crate) fn refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) || e.kind() == io::ErrorKind::Unsupported
}

/// Whether `clone3` was refused here before (then callers go straight to their fallback).
pub(super) fn clone3_refused_before() -> bool {
    NO_CLONE3.load(Ordering::Relaxed)
}

/// Passes `r` on, remembering when it says that `clone3` is refused here.
pub(super) fn note(r: io::Result<u32>) -> io::Result<u32> {
    if let Err(e) = &r
        && refused(e)
    {
        NO_CLONE3.store(true, Ordering::Relaxed);
    }
    r
}

/// Forks this process by a raw `clone3` (into the cgroup whose directory is `into`, if
/// any), else, without `into`, a raw `clone`. Returns 0 in the child, its pid in the parent.
/// A `quiet` child's end sends its parent no SIGCHLD, and only a `wait` with `__WALL` or
/// `__WCLONE` sees it: a child the caller's own code (a task's `wait()`) must not notice.
///
/// # Safety
///
/// No `pthread_atfork` handler runs: if this process has other threads, the child must
/// make only async-signal-safe calls (and no glibc `fork`) until it execs or exits. With
/// one thread, the child may run any code.
pub(crate) unsafe fn fork_raw(into: Option<BorrowedFd<'_>>, quiet: bool) -> io::Result<u32> {
    let signal = if quiet { 0 } else { libc::SIGCHLD };
    if into.is_some() && NO_CLONE3.load(Ordering::Relaxed) {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    let args = CloneArgs {
        flags: if into.is_some() { CLONE_INTO_CGROUP } else { 0 },
        exit_signal: signal as u64,
        cgroup: into.map_or(0, |fd| fd.as_raw_fd() as u64),
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid `clone_args` of the size passed; without CLONE_VM and with
    // no stack, the child is a copy of this process returning from the same call, as with
    // fork; the caller keeps the child to what is sound (see the function's contract).
    let rc = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, size_of::<CloneArgs>()) };
    if rc >= 0 {
        return Ok(rc as u32);
    }
    let e = io::Error::last_os_error();
    if into.is_some() {
        return note(Err(e));
    }
    // SAFETY: a plain `clone(SIGCHLD)` is a fork (no shared memory, no new stack); every
    // other argument is zero, so their order, which differs between architectures, does
    // not matter.
    let rc = unsafe { libc::syscall(libc::SYS_clone, signal as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc as u32) }
}

/// What the child of [`spawn_into`] needs, in memory it shares with its parent until it execs.
struct Exec {
    program: *const c_char,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
    socket: c_int,
    target: c_int,
    /// The child's errno if its exec failed (0 while it has not).
    err: AtomicI32,
}

/// Starts `program` with `argv` and `envp` (null-terminated arrays of C strings) as a child
/// created inside the cgroup whose directory is `cgroup`, with `socket` installed at
/// descriptor `target`, every signal handler back to its default and no signal blocked.
/// Returns the child's pid once it has exec'd; the caller reaps it.
pub(crate) fn spawn_into(
    program: &CStr,
    argv: &[*mut c_char],
    envp: &[*mut c_char],
    socket: BorrowedFd<'_>,
    target: c_int,
    cgroup: BorrowedFd<'_>,
) -> io::Result<u32> {
    if NO_CLONE3.load(Ordering::Relaxed) {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    debug_assert!(argv.last().is_some_and(|p| p.is_null()) && envp.last().is_some_and(|p| p.is_null()));
    note(vfork_exec(program, argv, envp, socket, target, cgroup))
}

#[cfg(not(target_arch = "x86_64"))]
fn vfork_exec(
    _: &CStr,
    _: &[*mut c_char],
    _: &[*mut c_char],
    _: BorrowedFd<'_>,
    _: c_int,
    _: BorrowedFd<'_>,
) -> io::Result<u32> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "clone3 into a cgroup is only implemented on x86_64"))
}

#[cfg(target_arch = "x86_64")]
fn vfork_exec(
    program: &CStr,
    argv: &[*mut c_char],
    envp: &[*mut c_char],
    socket: BorrowedFd<'_>,
    target: c_int,
    cgroup: BorrowedFd<'_>,
) -> io::Result<u32> {
    // The child's stack: 64 KiB, 16-byte aligned at both ends (the ABI wants the stack
    // aligned at a call). It runs `exec_child` only, which needs a few hundred bytes.
    let mut stack = vec![0u128; 4096];
    let exec = Exec {
        program: program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        socket: socket.as_raw_fd(),
        target,
        err: AtomicI32::new(0),
    };
    let args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.as_mut_ptr() as u64,
        stack_size: (stack.len() * size_of::<u128>()) as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // Every signal blocked across the clone: no handler of this process may run in the
    // child, which shares its memory, before the child has reset them all.
    let old = block_all();
    // SAFETY: `stack` and `exec` live until after the call, which returns in this process
    // only once the child has exec'd or exited (CLONE_VFORK).
    let rc = unsafe { clone3_vfork(&args, &exec) };
    restore(&old);
    drop(stack);
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc as i32));
    }
    let pid = rc as libc::pid_t;
    match exec.err.load(Ordering::Acquire) {
        0 => Ok(pid as u32),
        errno => {
            // SAFETY: reaps the child that just failed to exec (it has exited); a null
            // status pointer is allowed.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// `clone3(args)` whose child, on the stack `args` gives, runs `exec_child(exec)`.
///
/// # Safety
///
/// `args` asks for CLONE_VM | CLONE_VFORK and a stack that, like `exec`, stays alive until
/// this returns.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_vfork(args: &CloneArgs, exec: &Exec) -> i64 {
    let rc: i64;
    // SAFETY: with CLONE_VM | CLONE_VFORK this thread is suspended until the child execs
    // or exits, so what the child borrows outlives its use (the caller's contract). In the
    // parent the instructions after `syscall` only branch; rax, rcx and r11 are the
    // registers the kernel changes. The child starts on its own stack (16-byte aligned
    // top, so the `call` leaves it as a function entry expects) and calls `exec_child`,
    // which never returns; `ud2` is never reached.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => rc,
            in("rdi") args as *const CloneArgs,
            in("rsi") size_of::<CloneArgs>(),
            in("r12") exec as *const Exec,
            in("r13") exec_child as extern "C" fn(*const Exec) -> !,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    rc
}

/// The child of [`vfork_exec`], on its own stack in its parent's memory: only system
/// calls, no allocation, no lock. Signal handlers to their defaults (a handler of the
/// parent must not run here), the socket in place, no signal blocked, then the exec.
#[cfg(target_arch = "x86_64")]
extern "C" fn exec_child(exec: *const Exec) -> ! {
    // SAFETY: `exec` points to the parent's `Exec`, alive while the parent is suspended
    // (CLONE_VFORK), and its pointers to NUL-terminated strings and null-terminated arrays.
    // sigaction, dup2, sigprocmask, execve and _exit are system call wrappers that touch
    // only their arguments and errno (the parent thread's, which is suspended).
    unsafe {
        let exec = &*exec;
        for sig in 1..=64 {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            // Ignored signals stay ignored (as across an exec), but SIGPIPE, which the
            // Rust runtime ignores, goes back to its default, as std's `Command` does.
            if old.sa_sigaction != libc::SIG_DFL && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE) {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        if libc::dup2(exec.socket, exec.target) < 0 {
            fail(exec);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(exec.program, exec.argv.cast(), exec.envp.cast());
        fail(exec)
    }
}

/// The child of [`vfork_exec`] could not exec: its errno for the parent, then exit 127.
#[cfg(target_arch = "x86_64")]
fn fail(exec: &Exec) -> ! {
    // SAFETY: errno is readable in any thread; `_exit` ends the child without running
    // anything of the parent's.
    unsafe {
        exec.err.store(*libc::__errno_location(), Ordering::Release);
        libc::_exit(127)
    }
}

/// Blocks every signal in this thread; returns the mask before.
#[cfg(target_arch = "x86_64")]
fn block_all() -> libc::sigset_t {
    // SAFETY: `sigfillset` fills a local set; `pthread_sigmask` reads it and writes the
    // old mask to another local; both are plain data.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

#[cfg(target_arch = "x86_64")]
fn restore(old: &libc::sigset_t) {
    // SAFETY: `old` is a mask `pthread_sigmask` filled; setting it touches only this thread.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone3_missing_or_forbidden_is_told_apart_from_other_failures() {
        assert!(refused(&io::Error::from_raw_os_error(libc::ENOSYS)));
        assert!(refused(&io::Error::from_raw_os_error(libc::EPERM)));
        assert!(refused(&io::Error::new(io::ErrorKind::Unsupported, "arch")));
        assert!(!refused(&io::Error::from_raw_os_error(libc::EACCES)));
        assert!(!refused(&io::Error::from_raw_os_error(libc::ENOENT)));
    }
}
