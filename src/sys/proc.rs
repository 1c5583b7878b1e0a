//! Processes: pidfds, signals, the parent-death signal, CPU affinity, resource use.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::process::{Pid, PidfdFlags, Signal};

/// Opens a pidfd for `pid`: readable once the process has exited, and a race-free
/// handle for signals. The caller must not have reaped `pid` yet.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid as i32).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Sends signal number `sig` through a pidfd. Sending to an exited, unreaped process is a no-op.
pub(crate) fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    let sig =
        Signal::from_named_raw(sig).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unknown signal"))?;
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// This process's id.
pub(crate) fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Whether process `pid` exists in this pid namespace (a zombie counts; one this process
/// may not signal too). A pid that cannot be one (0, or beyond `i32`) counts as existing,
/// so that nothing is taken for the leftover of a process that is gone.
pub(crate) fn exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else { return true };
    !matches!(rustix::process::test_kill_process(pid), Err(rustix::io::Errno::SRCH))
}

/// Raises this process's OOM score adjustment by `by` (at most to 1000, the most
/// killable): under memory pressure the kernel's OOM killer then picks this process before
/// one with the adjustment it had, unless that one holds `by`/1000 of the memory more.
/// Raising needs no privilege; a failure (no `/proc`) leaves it as it was.
pub(crate) fn raise_oom_score(by: i32) {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    // One open for both the read and the write: this runs in every worker's start.
    let Ok(mut file) = std::fs::OpenOptions::new().read(true).write(true).open("/proc/self/oom_score_adj") else {
        return;
    };
    let mut now = [0u8; 16];
    let Ok(n) = file.read(&mut now) else { return };
    let Some(now) = std::str::from_utf8(&now[..n]).ok().and_then(|s| s.trim().parse::<i32>().ok()) else { return };
    let _ = file.write_all_at(now.saturating_add(by).min(1000).to_string().as_bytes(), 0);
}

/// The parent's process id (0 if it has none in this pid namespace).
pub(crate) fn getppid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
}

/// How many CPUs this process may run on (its affinity mask), at least 1.
pub(crate) fn cpu_count() -> usize {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (set.count() as usize).max(1),
        Err(_) => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    }
}

/// The name of signal number `sig` ("SIGKILL"), or "signal N".
///
/// ```
/// assert_eq!(multiproc::signal_name(9), "SIGKILL");
/// ```
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// Resident set size of `pid` in bytes, read from `/proc/<pid>/statm`.
pub(crate) fn rss_bytes(pid: u32) -> io::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable statm"))?;
    Ok(pages * rustix::param::page_size() as u64)
}

/// If this process is named `exe` (its `comm`: what `ps`, `top` and `pkill` match), as
/// a child started through `/proc/self/exe` is, gives it the name of process `pid`, its
/// parent: a forked child keeps its parent's name, and users look for their program's.
/// A child started from another executable keeps that one's name. Called on the main
/// thread, whose name is the process's.
pub(crate) fn take_name_of(pid: u32) -> io::Result<()> {
    if std::fs::read("/proc/self/comm")? != b"exe\n" {
        return Ok(());
    }
    let comm = std::fs::read(format!("/proc/{pid}/comm"))?;
    let name = comm.strip_suffix(b"\n").unwrap_or(&comm);
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    Ok(rustix::thread::set_name(&name)?)
}

static KILL_DESCENDANTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn kill_descendants_now() {
    // A subreaper with no child has no descendant: the walk through /proc (milliseconds
    // on a busy machine) is skipped.
    if KILL_DESCENDANTS.load(std::sync::atomic::Ordering::Relaxed) && crate::sys::contain::has_children() {
        crate::sys::contain::kill_descendants(getpid());
        crate::sys::contain::reap_any();
    }
}

/// From now on, this process kills its descendants when it exits (`exit`, `main`
/// returning, or [`exit_now`]): a contained child that is a child subreaper.
pub(crate) fn kill_descendants_at_exit() {
    if !KILL_DESCENDANTS.swap(true, std::sync::atomic::Ordering::Relaxed) {
        at_exit(kill_descendants_now);
    }
}

/// Sets signal `sig` to be ignored (kept so across `exec`).
pub(crate) fn ignore_signal(sig: i32) {
    // SAFETY: `signal` with `SIG_IGN` installs no handler code; `sig` is a valid number.
    unsafe { libc::signal(sig, libc::SIG_IGN) };
}

/// Makes SIGINT ignored in this process (kept across `exec`): a pool worker's, so that
/// Ctrl-C, which a terminal sends to its whole foreground process group, leaves the
/// decision to the program that owns the pool.
pub(crate) fn ignore_interrupt() {
    ignore_signal(libc::SIGINT);
}

/// Ends this process at once with `code`, without running exit handlers or destructors
/// (but killing its descendants first if [`kill_descendants_at_exit`] asked for it).
pub(crate) fn exit_now(code: i32) -> ! {
    kill_descendants_now();
    // SAFETY: `_exit` ends the process immediately; it takes no pointers and is always sound
    // to call. Skipping exit handlers is the point: a child whose parent died must not
    // run the parent's clean-up.
    unsafe { libc::_exit(code) }
}

/// Names this thread (the process, when it has one thread) as `ps` and `top` show it:
/// the crate's helper processes say what they are.
pub(crate) fn set_name(name: &std::ffi::CStr) {
    let _ = rustix::thread::set_name(name);
}

/// This thread's name (see [`set_name`]).
pub(crate) fn name() -> Option<std::ffi::CString> {
    rustix::thread::name().ok()
}

/// Registers `f` to run when the process exits normally (`exit`, or `main` returning).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: `atexit` only stores the function pointer; `f` is a plain `extern "C" fn()`
    // with no arguments, as `atexit` requires, and it lives for the whole program.
    unsafe {
        libc::atexit(f);
    }
}

/// Sets an environment variable of this process; only while it has one thread (a fork
/// server's template, right after its start).
pub(crate) fn set_env(key: &str, value: &str) {
    // SAFETY: the caller is single-threaded, so nothing reads the environment meanwhile.
    unsafe { std::env::set_var(key, value) }
}

/// Removes an environment variable from this process.
///
/// Called by `init()` at the start of `main`, which its documentation requires to run
/// before the program starts threads.
pub(crate) fn remove_env(key: &str) {
    // SAFETY: `init()` runs first in `main` (or in a constructor before `main` for tests),
    // before other threads that could read the environment concurrently exist.
    unsafe { std::env::remove_var(key) }
}
