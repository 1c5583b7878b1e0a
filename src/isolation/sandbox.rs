//! `Sandbox`: what a worker (after its initializer, before its first task) or a `Process`
//! child (before its target) may no longer do.
//!
//! See [`Sandbox`] for the mechanisms and why.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::sys;
use crate::sys::sandbox::Denial;

/// A sandbox policy for a pool's workers ([`PoolBuilder::sandbox`](crate::PoolBuilder)) or a
/// [`Process`](crate::Process). Built from nothing allowed away; each method takes
/// something away.
///
/// - `no_new_privs`, always.
/// - A **seccomp** filter from presets (no network sockets, no exec, no ptrace) plus user
///   rules, compiled with `seccompiler` (rust-vmm's, what Firecracker confines its VMMs
///   with: pure Rust, no C library to install, a small BPF compiler with argument
///   conditions; libseccomp's bindings need the C library at build and run time, which
///   a Rust program handed to users should not). Every preset also denies `io_uring_setup`:
///   io_uring operations (socket, connect, openat) bypass seccomp.
/// - **Landlock** filesystem rules (read-only paths, writable paths, nothing else), through
///   the `landlock` crate (the Landlock maintainers' own, which follows every ABI version).
///
/// A denied system call **traps** (`SECCOMP_RET_TRAP`): the SIGSYS handler, installed with
/// the filter, finds the call's number in a table made before the filter (so it neither
/// allocates nor locks), leaves "sandbox: `execve` denied (no exec)" as the worker's last
/// words and on stderr, and the process dies by SIGSYS. The task fails with that message,
/// naming the rule, and the pool replaces the worker, as after any death. Chosen over
/// `RET_ERRNO(EPERM)`, which a task could swallow or report as a bare "Operation not
/// permitted" (and a worker whose task swallowed it would be trusted with the next task
/// after a break-in attempt), and over `RET_KILL_PROCESS`, whose death says nothing of
/// the call. Landlock denials are `EACCES` errors the task sees ("Permission denied"):
/// the kernel offers no trap for them. A forked descendant of the task that makes a
/// denied call takes the worker down with the same message; a child started with
/// `Command` (`posix_spawn`, which resets signal handlers) dies by SIGSYS at its `exec`,
/// and the task sees that exit status.
///
/// Where the kernel lacks a feature, starting the child fails with a clear error unless
/// [`best_effort`](Sandbox::best_effort) was asked: never a silent downgrade.
///
/// ```no_run
/// let sandbox = multiproc::Sandbox::new().no_network().no_exec().no_ptrace().read_only("/usr");
/// # let _ = sandbox;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    no_network: bool,
    no_exec: bool,
    no_ptrace: bool,
    denied: Vec<(String, i64)>,
    read_only: Vec<PathBuf>,
    read_write: Vec<PathBuf>,
    best_effort: bool,
}

/// What the running kernel offers a [`Sandbox`].
///
/// ```
/// let support = multiproc::Sandbox::support();
/// if support.seccomp {
///     println!("seccomp filters work here");
/// }
/// match support.landlock_abi {
///     Some(abi) => println!("Landlock ABI {abi}"),
///     None => println!("no Landlock: path rules need best_effort(true)"),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxSupport {
    /// seccomp filters.
    pub seccomp: bool,
    /// The Landlock ABI version, if Landlock is there and enabled.
    pub landlock_abi: Option<i32>,
}

impl Sandbox {
    /// Only `no_new_privs`.
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let mut p = multiproc::Process::new(work, ()).sandbox(multiproc::Sandbox::new()); // no_new_privs only
    /// p.start()?;
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Sandbox {
        Sandbox::default()
    }

    /// No network: creating a socket of any family but `AF_UNIX` is denied
    /// ("sandbox: `socket` denied (no network)").
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::Sandbox::new().no_network(); // sockets other than AF_UNIX are denied
    /// let pool = multiproc::Pool::builder().processes(1).sandbox(s).build()?;
    /// drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn no_network(mut self) -> Sandbox {
        self.no_network = true;
        self
    }

    /// No `execve`/`execveat`: the task cannot run another program.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::Sandbox::new().no_exec(); // execve is denied
    /// drop(s);
    /// ```
    pub fn no_exec(mut self) -> Sandbox {
        self.no_exec = true;
        self
    }

    /// No `ptrace`, `process_vm_readv`, `process_vm_writev`: the task cannot inspect or
    /// change another process.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::Sandbox::new().no_ptrace();
    /// drop(s);
    /// ```
    pub fn no_ptrace(mut self) -> Sandbox {
        self.no_ptrace = true;
        self
    }

    /// Denies the system call `number` (e.g. `libc::SYS_unlink`), named `name` in the error.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::Sandbox::new().deny_syscall("mkdir", 83); // x86_64 number
    /// drop(s);
    /// ```
    pub fn deny_syscall(mut self, name: impl Into<String>, number: i64) -> Sandbox {
        self.denied.push((name.into(), number));
        self
    }

    /// Allows reading (and running) files beneath `path`. With any path rule, the
    /// filesystem is closed but for the paths given (and this process's own `/proc/self`).
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::Sandbox::new().read_only("/usr").read_write("/tmp").best_effort(true);
    /// drop(s);
    /// ```
    pub fn read_only(mut self, path: impl AsRef<Path>) -> Sandbox {
        self.read_only.push(path.as_ref().to_path_buf());
        self
    }

    /// Allows reading and writing beneath `path`.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::Sandbox::new().read_write(std::env::temp_dir()).best_effort(true);
    /// drop(s);
    /// ```
    pub fn read_write(mut self, path: impl AsRef<Path>) -> Sandbox {
        self.read_write.push(path.as_ref().to_path_buf());
        self
    }

    /// Where the kernel lacks seccomp or (part of) Landlock, confine as much as it allows
    /// instead of failing to start.
    ///
    /// ```
    /// multiproc::init();
    /// let s = multiproc::Sandbox::new().read_only("/usr").best_effort(true); // no Landlock here: go on without it
    /// drop(s);
    /// ```
    pub fn best_effort(mut self, yes: bool) -> Sandbox {
        self.best_effort = yes;
        self
    }

    /// What this kernel offers.
    ///
    /// ```
    /// println!("{:?}", multiproc::Sandbox::support());
    /// ```
    pub fn support() -> SandboxSupport {
        SandboxSupport { seccomp: sys::sandbox::seccomp_available(), landlock_abi: sys::sandbox::landlock_abi() }
    }

    fn uses_seccomp(&self) -> bool {
        self.no_network || self.no_exec || self.no_ptrace || !self.denied.is_empty()
    }

    fn uses_landlock(&self) -> bool {
        !self.read_only.is_empty() || !self.read_write.is_empty()
    }

    /// Checks, before any child starts, that the kernel offers what this policy needs.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.best_effort {
            return Ok(());
        }
        let support = Sandbox::support();
        if self.uses_seccomp() && !support.seccomp {
            return Err("sandbox: this kernel has no seccomp filters (CONFIG_SECCOMP_FILTER); \
                        ask best_effort(true) to run without them"
                .into());
        }
        if self.uses_landlock() && support.landlock_abi.is_none() {
            return Err("sandbox: Landlock is not available (Linux 5.13 or later, with landlock in the \
                        kernel's lsm= list); ask best_effort(true) to run without it"
                .into());
        }
        Ok(())
    }

    /// The system calls this policy denies, each with its message.
    fn denials(&self) -> Vec<Denial> {
        let deny = |number: i64, name: &str, rule: &str| Denial {
            number,
            unless_arg0: None,
            message: format!("sandbox: `{name}` denied ({rule})"),
        };
        let mut out = Vec::new();
        if self.uses_seccomp() {
            out.push(deny(libc::SYS_io_uring_setup, "io_uring_setup", "io_uring would bypass the filter"));
        }
        if self.no_network {
            out.push(Denial {
                unless_arg0: Some(libc::AF_UNIX as u64),
                ..deny(libc::SYS_socket, "socket", "no network")
            });
        }
        if self.no_exec {
            out.push(deny(libc::SYS_execve, "execve", "no exec"));
            out.push(deny(libc::SYS_execveat, "execveat", "no exec"));
        }
        if self.no_ptrace {
            out.push(deny(libc::SYS_ptrace, "ptrace", "no ptrace"));
            out.push(deny(libc::SYS_process_vm_readv, "process_vm_readv", "no ptrace"));
            out.push(deny(libc::SYS_process_vm_writev, "process_vm_writev", "no ptrace"));
        }
        for (name, number) in &self.denied {
            out.push(deny(*number, name, "user rule"));
        }
        out
    }

    /// Confines this process: `no_new_privs`, Landlock, then seccomp (last, so the calls
    /// before it are not filtered). `prepare` and `hook` are as `install_seccomp` takes them.
    fn enter(&self, prepare: fn(&str) -> Vec<u8>, hook: Option<fn(&[u8])>) -> Result<(), String> {
        sys::sandbox::set_no_new_privs().map_err(|e| format!("sandbox: cannot set no_new_privs: {e}"))?;
        if self.uses_landlock() {
            let mut read_only = self.read_only.clone();
            read_only.push(PathBuf::from("/proc/self"));
            let enforced = sys::sandbox::landlock(&read_only, &self.read_write, self.best_effort)
                .map_err(|e| format!("sandbox: {e}"))?;
            if !enforced && !self.best_effort {
                return Err("sandbox: Landlock rules are not fully enforced by this kernel".into());
            }
        }
        if self.uses_seccomp() {
            if !sys::sandbox::seccomp_available() {
                return if self.best_effort { Ok(()) } else { Err("sandbox: no seccomp in this kernel".into()) };
            }
            sys::sandbox::install_seccomp(&self.denials(), prepare, hook)?;
        }
        Ok(())
    }
}

/// The sandbox a child was given, until it enters it.
static PENDING: Mutex<Option<Sandbox>> = Mutex::new(None);

/// In the child: remembers the sandbox to enter later.
pub(crate) fn keep(sandbox: Option<Sandbox>) {
    *PENDING.lock().unwrap_or_else(|e| e.into_inner()) = sandbox;
}

/// In the child: enters the sandbox it was given, if any (once). `prepare` turns a
/// denial's message into the bytes `hook` leaves for the parent when the call is made.
pub(crate) fn enter(prepare: fn(&str) -> Vec<u8>, hook: Option<fn(&[u8])>) -> Result<(), String> {
    let pending = PENDING.lock().unwrap_or_else(|e| e.into_inner()).take();
    match pending {
        Some(s) => s.enter(prepare, hook),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_preset_denies_its_calls_with_its_rule_named() {
        let s = Sandbox::new().no_network().no_exec().no_ptrace().deny_syscall("unlink", libc::SYS_unlink);
        let d = s.denials();
        let msg = |n: i64| d.iter().find(|d| d.number == n).map(|d| d.message.clone()).unwrap();
        assert_eq!(msg(libc::SYS_socket), "sandbox: `socket` denied (no network)");
        assert_eq!(msg(libc::SYS_execve), "sandbox: `execve` denied (no exec)");
        assert_eq!(msg(libc::SYS_ptrace), "sandbox: `ptrace` denied (no ptrace)");
        assert_eq!(msg(libc::SYS_unlink), "sandbox: `unlink` denied (user rule)");
        assert!(d.iter().any(|d| d.number == libc::SYS_io_uring_setup));
        assert_eq!(d.iter().find(|d| d.number == libc::SYS_socket).unwrap().unless_arg0, Some(libc::AF_UNIX as u64));
        assert!(Sandbox::new().denials().is_empty());
    }
}
