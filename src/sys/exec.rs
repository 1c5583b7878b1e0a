//! Starting a child executable with one inherited socket and the parent-death signal.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the
//! process. So every child is forked by one long-lived spawner thread: a child started
//! from a short-lived user thread must not die with that thread.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// The descriptor number at which a child finds its socket to the parent.
pub(crate) const CHILD_SOCKET_FD: RawFd = 3;

type Request = (Command, mpsc::Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("multiproc-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("multiproc: cannot start the spawner thread");
        Mutex::new(tx)
    })
}

/// Starts `cmd` with `sock` installed at [`CHILD_SOCKET_FD`] in the child (and no other
/// inherited descriptor beyond stdio), with `SIGKILL` as its parent-death signal.
///
/// The fork happens on the long-lived spawner thread (see the module docs).
pub(crate) fn spawn_with_socket(mut cmd: Command, sock: BorrowedFd<'_>) -> io::Result<Child> {
    let src = sock.as_raw_fd();
    let parent = super::proc::getpid() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it calls prctl, getppid, dup2, fcntl and
    // returns an io::Error built from a raw errno, none of which allocate or take locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would signal us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            if src == CHILD_SOCKET_FD {
                // dup2 onto itself keeps FD_CLOEXEC; clear it explicitly.
                if libc::fcntl(src, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(src, CHILD_SOCKET_FD) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv().map_err(|_| io::Error::other("the spawner thread is gone"))?
}
