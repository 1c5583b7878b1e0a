//! `Sandbox`: what a worker (after its initializer, before its first task) or a `Process`
//! child (before its target) may no longer do.
//!
//! See [`Sandbox`] for the mechanisms and why.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::sys;
use crate::sys::sandbox::{Denial, When};

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
/// the kernel offers no trap for them, and does not tell the process which path it
/// refused (Linux 6.15 can log it to the audit log, which only a privileged reader sees).
/// A task that panics on one (an `unwrap`) has the rule and the paths it allows added to
/// its `TaskError::Panicked` message ("[sandbox: filesystem access denied (Landlock:
/// read-only /usr; nothing else)]"); the same for `ENETUNREACH` under a private network.
/// An error the task returns as its value is its own, untouched. A forked descendant of the task that makes a
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
    read_only_syscalls: bool,
    private_network: bool,
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
    /// Whether a [`private_network`](Sandbox::private_network) can be entered (unprivileged
    /// user namespaces allowed; tried once, in a forked child).
    pub private_network: bool,
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

    /// Read-only system calls: nothing that changes the filesystem — `open`/`openat`
    /// with a write flag (`O_WRONLY`, `O_RDWR`, `O_CREAT`, `O_TRUNC`), `openat2`, `creat`,
    /// unlink, rename, mkdir, rmdir, mknod, link, symlink, chmod, chown, path `truncate`,
    /// the xattr setters, the timestamp setters, mount ("sandbox: `unlinkat` denied
    /// (read-only syscalls)"). Descriptors already open stay usable: the worker talks to
    /// its pool over its socket, a task writes to stdout, and `write`, `ftruncate`,
    /// `fallocate` on an open descriptor (a memfd the pool shares results through) are
    /// allowed. Unlike Landlock paths this needs no kernel support beyond seccomp, and
    /// closes every path at once.
    pub fn read_only_syscalls(mut self) -> Sandbox {
        self.read_only_syscalls = true;
        self
    }

    /// A private network: the child moves into a new user namespace (its uid and gid
    /// mapped to themselves) and a new network namespace, whose only interface, loopback,
    /// is down. No address can be reached — not the host's, not `127.0.0.1` — and the
    /// task's `connect` fails with "Network is unreachable"; a task that panics on it is
    /// told why ("sandbox: private network"). `AF_UNIX` sockets by path still work (the
    /// filesystem is not the network namespace's), as does the worker's socket to its pool.
    ///
    /// Needs unprivileged user namespaces (a kernel setting many distributions change:
    /// `user.max_user_namespaces`, `kernel.unprivileged_userns_clone`, AppArmor's
    /// `apparmor_restrict_unprivileged_userns`): `build()` tries once and fails naming
    /// what was refused, unless [`best_effort`](Sandbox::best_effort), which runs without it
    /// and says so in [`in_effect`](Sandbox::in_effect) and `PoolStats::sandbox`. Inside
    /// its user namespace the child holds capabilities over its own namespaces only; Landlock
    /// forbids it mounts, and [`read_only_syscalls`](Sandbox::read_only_syscalls) denies
    /// `mount` as well. The child must be single-threaded when it enters the sandbox (a
    /// worker whose initializer left threads running fails to start, saying so).
    pub fn private_network(mut self) -> Sandbox {
        self.private_network = true;
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
        SandboxSupport {
            seccomp: sys::sandbox::seccomp_available(),
            landlock_abi: sys::sandbox::landlock_abi(),
            private_network: sys::sandbox::private_network_available().is_ok(),
        }
    }

    fn uses_seccomp(&self) -> bool {
        self.no_network || self.no_exec || self.no_ptrace || self.read_only_syscalls || !self.denied.is_empty()
    }

    fn uses_landlock(&self) -> bool {
        !self.read_only.is_empty() || !self.read_write.is_empty()
    }

    /// Checks, before any child starts, that the kernel offers what this policy needs.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.best_effort {
            return Ok(());
        }
        if self.uses_seccomp() && !sys::sandbox::seccomp_available() {
            return Err("sandbox: this kernel has no seccomp filters (CONFIG_SECCOMP_FILTER); \
                        ask best_effort(true) to run without them"
                .into());
        }
        if self.uses_landlock() && sys::sandbox::landlock_abi().is_none() {
            return Err("sandbox: Landlock is not available (Linux 5.13 or later, with landlock in the \
                        kernel's lsm= list); ask best_effort(true) to run without it"
                .into());
        }
        if self.private_network
            && let Err(e) = sys::sandbox::private_network_available()
        {
            return Err(format!(
                "sandbox: no private network: {e}; ask best_effort(true) to run without it (the network open)"
            ));
        }
        Ok(())
    }

    /// What this policy confines on this kernel, in words: the rules that take effect
    /// (with [`best_effort`](Sandbox::best_effort), those the kernel lacks are named as
    /// left out).
    ///
    /// ```
    /// let s = multiproc::Sandbox::new().no_exec();
    /// # if multiproc::Sandbox::support().seccomp {
    /// assert_eq!(s.in_effect(), "no_new_privs; seccomp: no exec");
    /// # }
    /// ```
    pub fn in_effect(&self) -> String {
        let mut parts = vec!["no_new_privs".to_string()];
        if self.uses_seccomp() {
            let presets = [
                (self.no_network, "no network"),
                (self.no_exec, "no exec"),
                (self.no_ptrace, "no ptrace"),
                (self.read_only_syscalls, "read-only syscalls"),
                (!self.denied.is_empty(), "user rules"),
            ];
            let names: Vec<&str> = presets.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
            let off = if sys::sandbox::seccomp_available() { "" } else { " (LEFT OUT: no seccomp in this kernel)" };
            parts.push(format!("seccomp: {}{off}", names.join(", ")));
        }
        if self.uses_landlock() {
            parts.push(match sys::sandbox::landlock_abi() {
                Some(abi) => format!("Landlock ABI {abi}: {}", self.landlock_rule()),
                None => "Landlock (LEFT OUT: not in this kernel)".to_string(),
            });
        }
        if self.private_network {
            parts.push(match sys::sandbox::private_network_available() {
                Ok(()) => "private network".to_string(),
                Err(e) => format!("private network (LEFT OUT: {e})"),
            });
        }
        parts.join("; ")
    }

    /// The Landlock rule in words: "read-only /usr; read-write /tmp/x; nothing else".
    fn landlock_rule(&self) -> String {
        let list = |paths: &[PathBuf]| paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        let mut out = Vec::new();
        if !self.read_only.is_empty() {
            out.push(format!("read-only {}", list(&self.read_only)));
        }
        if !self.read_write.is_empty() {
            out.push(format!("read-write {}", list(&self.read_write)));
        }
        out.push("nothing else".into());
        out.join("; ")
    }

    /// The system calls this policy denies, each with its message.
    fn denials(&self) -> Vec<Denial> {
        let deny = |number: i64, name: &str, rule: &str| Denial {
            number,
            when: When::Always,
            message: format!("sandbox: `{name}` denied ({rule})"),
        };
        let mut out = Vec::new();
        if self.uses_seccomp() {
            out.push(deny(libc::SYS_io_uring_setup, "io_uring_setup", "io_uring would bypass the filter"));
        }
        if self.no_network {
            out.push(Denial {
                when: When::Arg0Not(libc::AF_UNIX as u64),
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
        if self.read_only_syscalls {
            out.extend(read_only_denials());
        }
        for (name, number) in &self.denied {
            out.push(deny(*number, name, "user rule"));
        }
        out
    }

    fn enter_private_network(&self) -> Result<(), String> {
        // Not a kernel's lack but the program's doing: an error even with best effort.
        let threads = crate::sys::contain::threads();
        if threads > 1 {
            return Err(format!(
                "sandbox: a private network needs a single-threaded process and this one has {threads} \
                 threads (started by the initializer?)"
            ));
        }
        match sys::sandbox::enter_private_network() {
            Err(_) if self.best_effort => Ok(()),
            Err(e) => Err(format!("sandbox: cannot enter a private network: {e}")),
            Ok(()) => Ok(()),
        }
    }

    /// Confines this process: `no_new_privs`, Landlock, then seccomp (last, so the calls
    /// before it are not filtered). `prepare` and `hook` are as `install_seccomp` takes them.
    fn enter(&self, prepare: fn(&str) -> Vec<u8>, hook: Option<fn(&[u8])>) -> Result<(), String> {
        sys::sandbox::set_no_new_privs().map_err(|e| format!("sandbox: cannot set no_new_privs: {e}"))?;
        // Before Landlock, which would refuse the writes of the uid/gid maps.
        if self.private_network {
            self.enter_private_network()?;
        }
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

/// What `read_only_syscalls` denies: every call that changes the filesystem by a path,
/// and `open`s with a write flag (a table).
fn read_only_denials() -> Vec<Denial> {
    const RULE: &str = "read-only syscalls";
    let write_flags = [libc::O_WRONLY, libc::O_RDWR, libc::O_CREAT, libc::O_TRUNC].map(|f| f as u64).to_vec();
    let mut calls: Vec<(i64, &str)> = vec![
        (libc::SYS_openat2, "openat2"),
        (libc::SYS_unlinkat, "unlinkat"),
        (libc::SYS_renameat, "renameat"),
        (libc::SYS_renameat2, "renameat2"),
        (libc::SYS_mkdirat, "mkdirat"),
        (libc::SYS_mknodat, "mknodat"),
        (libc::SYS_linkat, "linkat"),
        (libc::SYS_symlinkat, "symlinkat"),
        (libc::SYS_fchmod, "fchmod"),
        (libc::SYS_fchmodat, "fchmodat"),
        (libc::SYS_fchmodat2, "fchmodat2"),
        (libc::SYS_fchown, "fchown"),
        (libc::SYS_fchownat, "fchownat"),
        (libc::SYS_truncate, "truncate"),
        (libc::SYS_setxattr, "setxattr"),
        (libc::SYS_lsetxattr, "lsetxattr"),
        (libc::SYS_fsetxattr, "fsetxattr"),
        (libc::SYS_removexattr, "removexattr"),
        (libc::SYS_lremovexattr, "lremovexattr"),
        (libc::SYS_fremovexattr, "fremovexattr"),
        (libc::SYS_utimensat, "utimensat"),
        (libc::SYS_mount, "mount"),
        (libc::SYS_umount2, "umount2"),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        (libc::SYS_creat, "creat"),
        (libc::SYS_unlink, "unlink"),
        (libc::SYS_rmdir, "rmdir"),
        (libc::SYS_rename, "rename"),
        (libc::SYS_mkdir, "mkdir"),
        (libc::SYS_mknod, "mknod"),
        (libc::SYS_link, "link"),
        (libc::SYS_symlink, "symlink"),
        (libc::SYS_chmod, "chmod"),
        (libc::SYS_chown, "chown"),
        (libc::SYS_lchown, "lchown"),
        (libc::SYS_utime, "utime"),
        (libc::SYS_utimes, "utimes"),
        (libc::SYS_futimesat, "futimesat"),
    ]);
    let mut out: Vec<Denial> = calls
        .into_iter()
        .map(|(number, name)| Denial {
            number,
            when: When::Always,
            message: format!("sandbox: `{name}` denied ({RULE})"),
        })
        .collect();
    let open_for_writing = |number: i64, name: &str, arg: u8| Denial {
        number,
        when: When::ArgHasAny { arg, bits: write_flags.clone() },
        message: format!("sandbox: `{name}` for writing denied ({RULE})"),
    };
    out.push(open_for_writing(libc::SYS_openat, "openat", 2));
    #[cfg(target_arch = "x86_64")]
    out.push(open_for_writing(libc::SYS_open, "open", 1));
    out
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
    let Some(s) = pending else { return Ok(()) };
    s.enter(prepare, hook)?;
    let _ = ENTERED.set(s);
    Ok(())
}

/// The sandbox this process entered.
static ENTERED: std::sync::OnceLock<Sandbox> = std::sync::OnceLock::new();

/// In a sandboxed child: what the sandbox has to do with a task's failure `message`, if
/// anything. Landlock and a private network refuse with plain errors (`EACCES`,
/// `ENETUNREACH`) that do not say why; this names the rule. The kernel does not tell the
/// process which path Landlock refused (since Linux 6.15 it can log it to the audit log,
/// which only a privileged reader sees), so the hint names the paths that are allowed.
pub(crate) fn explain(message: &str) -> Option<String> {
    let s = ENTERED.get()?;
    let says = |words: &[&str]| words.iter().any(|w| message.contains(w));
    // How `std::io::Error` shows EACCES and ENETUNREACH (Display and Debug).
    if s.uses_landlock() && says(&["Permission denied", "PermissionDenied"]) {
        return Some(format!("sandbox: filesystem access denied (Landlock: {})", s.landlock_rule()));
    }
    if s.private_network && says(&["Network is unreachable", "NetworkUnreachable"]) {
        return Some("sandbox: network unreachable (private network: no interface is up)".into());
    }
    None
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
        assert_eq!(d.iter().find(|d| d.number == libc::SYS_socket).unwrap().when, When::Arg0Not(libc::AF_UNIX as u64));
        assert!(Sandbox::new().denials().is_empty());
    }
}
