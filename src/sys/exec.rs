//! Starting a child executable with one inherited socket, and the child's side of the
//! parent-death signal.
//!
//! Children are started with `posix_spawn`, which glibc implements with
//! `clone(CLONE_VM | CLONE_VFORK)`: unlike a fork, the parent's page tables are not
//! copied, which is most of what a fork of a large program costs. A child contained by a
//! cgroup is started the same way but inside its cgroup (`sys::clone::spawn_into`, which
//! does what `posix_spawn` does with `clone3`). Between that clone and the exec nothing
//! runs but the resetting of signals and the socket's `dup2`, so the child sets its
//! parent-death signal itself, first thing in `init()` ([`die_with_parent`]), then checks
//! that its parent still lives.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that created the child exits, not the
//! process. So every child is created by one long-lived spawner thread: a child started
//! from a short-lived user thread must not die with that thread.

use std::ffi::{CString, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use rustix::process::Signal;

/// The descriptor number at which a child finds its socket to the parent.
pub(crate) const CHILD_SOCKET_FD: RawFd = 3;

/// Everything `posix_spawn` needs, built before the request reaches the spawner thread.
struct Request {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// A private copy of the child's socket, numbered above [`CHILD_SOCKET_FD`] so that
    /// installing it there is always a real `dup2` (which clears close-on-exec).
    socket: OwnedFd,
    /// The cgroup directory to create the child in, if any.
    cgroup: Option<OwnedFd>,
    reply: mpsc::Sender<io::Result<Spawned>>,
}

/// A child just started: its pid, and whether it was created inside the cgroup asked for
/// (else the caller must move it there).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    pub(crate) in_cgroup: bool,
}

fn spawner() -> &'static Mutex<mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("multiproc-spawner".into())
            .spawn(move || {
                for Request { program, argv, envp, socket, cgroup, reply } in rx {
                    let started = start(&program, &argv, &envp, socket.as_fd(), cgroup.as_ref().map(AsFd::as_fd));
                    // Close this copy of the child's socket before the caller's handshake:
                    // a child that dies early must be seen to hang up. And the cgroup's
                    // copy before the reply, after which the caller's start may end and
                    // its pool be dropped: no descriptor of it may be open a moment later.
                    drop(socket);
                    drop(cgroup);
                    let _ = reply.send(started);
                }
            })
            .expect("multiproc: cannot start the spawner thread");
        Mutex::new(tx)
    })
}

fn c_string(s: OsString, what: &str) -> io::Result<CString> {
    CString::new(s.into_vec())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("the {what} contains a NUL byte")))
}

/// Starts `program` with arguments `argv` (its `argv[0]` first) and environment `env`,
/// with `sock` installed at [`CHILD_SOCKET_FD`] in the child and no other inherited
/// descriptor beyond stdio (every other descriptor of the crate is close-on-exec).
/// Returns the child's pid; the caller reaps it.
///
/// With `cgroup` (a cgroup directory), the child is created inside that cgroup where the
/// kernel allows (`clone3` with `CLONE_INTO_CGROUP`, see `sys::clone`), which saves the
/// caller a move; [`Spawned::in_cgroup`] says whether it was.
///
/// The child is created on the long-lived spawner thread (see the module docs); it must
/// call [`die_with_parent`] with this process's pid to get its parent-death signal.
pub(crate) fn spawn_with_socket(
    program: OsString,
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    sock: BorrowedFd<'_>,
    cgroup: Option<BorrowedFd<'_>>,
) -> io::Result<Spawned> {
    let program = c_string(program, "executable path")?;
    let argv = argv.into_iter().map(|a| c_string(a, "argument")).collect::<io::Result<Vec<_>>>()?;
    let envp = env
        .into_iter()
        .map(|(mut k, v)| {
            k.push("=");
            k.push(v);
            c_string(k, "environment")
        })
        .collect::<io::Result<Vec<_>>>()?;
    let socket = rustix::io::fcntl_dupfd_cloexec(sock, CHILD_SOCKET_FD + 1)?;
    let cgroup = cgroup.map(|fd| fd.try_clone_to_owned()).transpose()?;
    let (reply, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(Request { program, argv, envp, socket, cgroup, reply })
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv().map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// `posix_spawn` file actions, destroyed when dropped.
struct FileActions(libc::posix_spawn_file_actions_t);

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: `self.0` was initialised by `posix_spawn_file_actions_init` (the only way
        // a `FileActions` is built) and is destroyed exactly once, here.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// `posix_spawn` attributes, destroyed when dropped.
struct Attributes(libc::posix_spawnattr_t);

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: `self.0` was initialised by `posix_spawnattr_init` (the only way an
        // `Attributes` is built) and is destroyed exactly once, here.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// `posix_spawn`-family functions return an error number instead of setting errno.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) }
}

/// Starts the child: inside `cgroup` if the kernel lets us, else with `posix_spawn`.
fn start(
    program: &CString,
    argv: &[CString],
    envp: &[CString],
    socket: BorrowedFd<'_>,
    cgroup: Option<BorrowedFd<'_>>,
) -> io::Result<Spawned> {
    let mut argv: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    let mut envp: Vec<*mut libc::c_char> = envp.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp.push(std::ptr::null_mut());
    if let Some(dir) = cgroup {
        match super::clone::spawn_into(program, &argv, &envp, socket, CHILD_SOCKET_FD, dir) {
            Ok(pid) => return Ok(Spawned { pid, in_cgroup: true }),
            // clone3 is missing or filtered here: start it as usual, the caller moves it.
            Err(e) if super::clone::refused(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let pid = posix_spawn(program, &argv, &envp, socket)?;
    Ok(Spawned { pid, in_cgroup: false })
}

fn posix_spawn(
    program: &CString,
    argv: &[*mut libc::c_char],
    envp: &[*mut libc::c_char],
    socket: BorrowedFd<'_>,
) -> io::Result<u32> {
    let mut actions = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
    // SAFETY: `actions` is writable storage of the right type for the init call to fill.
    check(unsafe { libc::posix_spawn_file_actions_init(actions.as_mut_ptr()) })?;
    // SAFETY: the init call above succeeded, so the value is initialised.
    let mut actions = FileActions(unsafe { actions.assume_init() });
    // SAFETY: `actions.0` is initialised; the source descriptor is open (borrowed)
    // and differs from the target, so the child gets a copy without close-on-exec.
    check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut actions.0, socket.as_raw_fd(), CHILD_SOCKET_FD) })?;

    let mut attr = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
    // SAFETY: `attr` is writable storage of the right type for the init call to fill.
    check(unsafe { libc::posix_spawnattr_init(attr.as_mut_ptr()) })?;
    // SAFETY: the init call above succeeded, so the value is initialised.
    let mut attr = Attributes(unsafe { attr.assume_init() });
    let mut empty = MaybeUninit::<libc::sigset_t>::uninit();
    let mut sigpipe = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigemptyset` fills the storage it is given; `sigaddset` then adds a valid
    // signal number to a set that is initialised. The attribute setters copy the sets
    // and the flags into the initialised `attr`.
    unsafe {
        libc::sigemptyset(empty.as_mut_ptr());
        libc::sigemptyset(sigpipe.as_mut_ptr());
        libc::sigaddset(sigpipe.as_mut_ptr(), libc::SIGPIPE);
        // Like std's `Command`: no blocked signal, and SIGPIPE back to its default
        // (the Rust runtime ignores it in this process).
        check(libc::posix_spawnattr_setsigmask(&mut attr.0, empty.as_ptr()))?;
        check(libc::posix_spawnattr_setsigdefault(&mut attr.0, sigpipe.as_ptr()))?;
        check(libc::posix_spawnattr_setflags(
            &mut attr.0,
            (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
        ))?;
    }

    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: the program path and the argv/envp
    // strings are NUL-terminated and borrowed for the call, and both arrays end with a null
    // pointer; `actions` and `attr` are initialised. posix_spawn does not keep them.
    check(unsafe { libc::posix_spawn(&mut pid, program.as_ptr(), &actions.0, &attr.0, argv.as_ptr(), envp.as_ptr()) })?;
    Ok(pid as u32)
}

/// Called first by a child: have the kernel SIGKILL this process when the thread that
/// created it exits (its parent's spawner thread, which lives as long as the parent),
/// then check that `parent` is still its parent. Returns `false` if the parent is
/// already gone (then nobody would ever signal this process): the caller must exit.
pub(crate) fn die_with_parent(parent: u32) -> io::Result<bool> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    Ok(rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) == Some(parent))
}

/// Reaps the child behind `pidfd` if it has ended: its exit code in Python's convention
/// (`-N` when killed by signal N), or `None` while it runs.
pub(crate) fn try_reap(pidfd: BorrowedFd<'_>) -> io::Result<Option<i32>> {
    use rustix::process::{WaitId, WaitIdOptions};
    let status = loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), WaitIdOptions::EXITED | WaitIdOptions::NOHANG) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    Ok(status.map(|s| match (s.exit_status(), s.terminating_signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => -sig,
        (None, None) => -1,
    }))
}
