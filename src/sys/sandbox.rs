//! Confining this process: `no_new_privs`, a seccomp filter whose denials trap into a
//! handler that names them, and Landlock filesystem rules. The policy is
//! `crate::isolation::sandbox`.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;

use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};

/// Whether the kernel filters system calls with seccomp.
pub(crate) fn seccomp_available() -> bool {
    // SAFETY: `prctl(PR_GET_SECCOMP)` takes no pointer and only reads this process's mode;
    // it fails with EINVAL on a kernel built without seccomp.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 }
}

/// The kernel's Landlock ABI version, `None` without Landlock (not built in, or not enabled).
pub(crate) fn landlock_abi() -> Option<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the call only
    // returns the ABI version; it creates nothing.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v as i32)
}

/// Sets `no_new_privs`: neither this process nor its descendants can gain privileges
/// (setuid executables, file capabilities) again.
pub(crate) fn set_no_new_privs() -> io::Result<()> {
    rustix::thread::set_no_new_privs(true)?;
    Ok(())
}

/// When a denied system call is denied, by its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum When {
    /// Whatever its arguments.
    Always,
    /// When its first argument is not this value (`socket` of `AF_UNIX` stays allowed).
    Arg0Not(u64),
    /// When argument `arg` has any of `bits` set (`openat` with write flags).
    ArgHasAny {
        /// The argument's index.
        arg: u8,
        /// The flags, each tested alone.
        bits: Vec<u64>,
    },
}

/// One system call the filter denies.
#[derive(Debug, Clone)]
pub(crate) struct Denial {
    pub(crate) number: i64,
    pub(crate) when: When,
    /// What a task that makes the call is told ("sandbox: `execve` denied (no exec)").
    pub(crate) message: String,
}

/// For each denied call: its number, its message and the message as the trap hook wants it.
static TRAPS: OnceLock<Vec<(i64, String, Vec<u8>)>> = OnceLock::new();
/// Called in the SIGSYS handler with the prepared bytes of the denial (it must not allocate).
static TRAP_HOOK: OnceLock<fn(&[u8])> = OnceLock::new();

/// The process that installed the filter: a descendant that makes a denied call (the
/// child of a `posix_spawn`, which `Command` uses) takes it down too, so the task fails
/// instead of seeing a child that could not start.
static SANDBOXED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The part of `siginfo_t` that a seccomp trap fills (`_sigsys`), as the kernel lays it out.
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for this SIGSYS; a seccomp trap fills its
    // `_sigsys` member, whose layout `SigsysInfo` mirrors.
    let info = unsafe { &*info.cast::<SigsysInfo>() };
    // A SIGSYS sent by a descendant (see `SANDBOXED`) carries no system call.
    const SYS_SECCOMP: libc::c_int = 1;
    let nr = if info.code == SYS_SECCOMP { info.syscall as i64 } else { -1 };
    // Only reads of what was prepared before the filter, and `write`: async-signal-safe.
    if let Some((_, message, prepared)) = TRAPS.get().and_then(|t| t.iter().find(|(n, _, _)| *n == nr)) {
        if let Some(hook) = TRAP_HOOK.get() {
            hook(prepared);
        }
        // SAFETY: writes bytes of a live string to stderr; `write` is async-signal-safe.
        unsafe {
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::write(2, b"\n".as_ptr().cast(), 1);
        }
    }
    let sandboxed = SANDBOXED.load(std::sync::atomic::Ordering::Relaxed);
    // SAFETY: `getpid` and `kill` are async-signal-safe and take plain integers.
    unsafe {
        if sandboxed > 0 && libc::getpid() != sandboxed {
            libc::kill(sandboxed, libc::SIGSYS);
        }
    }
    // The handler was reset on entry (SA_RESETHAND) and SIGSYS is not blocked in it
    // (SA_NODEFER): this raise ends the process by SIGSYS, the system call never ran.
    // SAFETY: `raise` is async-signal-safe and takes a plain signal number.
    unsafe { libc::raise(libc::SIGSYS) };
}

/// Installs a seccomp filter that traps `denials` (everything else allowed) and the SIGSYS
/// handler that names them; `prepare` turns each message into the bytes `hook` gets.
pub(crate) fn install_seccomp(
    denials: &[Denial],
    prepare: fn(&str) -> Vec<u8>,
    hook: Option<fn(&[u8])>,
) -> Result<(), String> {
    let mut rules: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
    for d in denials {
        let new = seccomp_rules(&d.when).map_err(|e| format!("seccomp rule for `{}`: {e}", d.message))?;
        // A call denied whatever its arguments (`None`) stays so; conditions add up.
        let entry = rules.entry(d.number).or_insert_with(|| Some(Vec::new()));
        match (entry.as_mut(), new) {
            (Some(all), Some(more)) => all.extend(more),
            _ => *entry = None,
        }
    }
    let rules = rules.into_iter().map(|(n, r)| (n, r.unwrap_or_default())).collect();
    let arch = std::env::consts::ARCH.try_into().map_err(|e| format!("seccomp: {e:?}"))?;
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Trap, arch)
        .map_err(|e| format!("seccomp filter: {e}"))?;
    let program: seccompiler::BpfProgram = filter.try_into().map_err(|e| format!("seccomp filter: {e:?}"))?;
    let traps = denials.iter().map(|d| (d.number, d.message.clone(), prepare(&d.message))).collect();
    TRAPS.set(traps).map_err(|_| "a seccomp filter is already installed in this process".to_string())?;
    if let Some(hook) = hook {
        let _ = TRAP_HOOK.set(hook);
    }
    SANDBOXED.store(std::process::id() as i32, std::sync::atomic::Ordering::Relaxed);
    install_sigsys_handler().map_err(|e| format!("cannot handle SIGSYS: {e}"))?;
    seccompiler::apply_filter(&program).map_err(|e| format!("cannot install the seccomp filter: {e}"))
}

/// The seccompiler rules for `when` (any one matching denies), `None` for always.
fn seccomp_rules(when: &When) -> Result<Option<Vec<SeccompRule>>, seccompiler::BackendError> {
    let rule = |arg: u8, op: SeccompCmpOp, value: u64| {
        SeccompRule::new(vec![SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)?])
    };
    Ok(match when {
        When::Always => None,
        When::Arg0Not(v) => Some(vec![rule(0, SeccompCmpOp::Ne, *v)?]),
        When::ArgHasAny { arg, bits } => {
            Some(bits.iter().map(|b| rule(*arg, SeccompCmpOp::MaskedEq(*b), *b)).collect::<Result<_, _>>()?)
        }
    })
}

fn install_sigsys_handler() -> io::Result<()> {
    // SAFETY: a zeroed `sigaction` is a valid starting value; the handler is an
    // `extern "C"` function of the SA_SIGINFO signature and lives for the whole program.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_RESETHAND;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut())
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Restricts the filesystem to `read_only` and `read_write` paths (and what is beneath
/// them) with Landlock. With `best_effort`, a kernel without (all of) Landlock restricts
/// what it can; otherwise it is an error. Returns whether the rules are fully enforced.
pub(crate) fn landlock(read_only: &[PathBuf], read_write: &[PathBuf], best_effort: bool) -> Result<bool, String> {
    use landlock::{
        ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
        path_beneath_rules,
    };
    // The kernel's own version, up to V3 (file truncation is handled from V3 on; V4 and
    // later add network and ioctl rights, which the seccomp presets cover).
    let abi = ABI::from(landlock_abi().unwrap_or(0).min(3));
    let level = if best_effort { CompatLevel::BestEffort } else { CompatLevel::HardRequirement };
    let err = |e: landlock::RulesetError| format!("Landlock: {e}");
    let status = Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(read_only, AccessFs::from_read(abi)))
        .map_err(err)?
        .add_rules(path_beneath_rules(read_write, AccessFs::from_all(abi)))
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    Ok(status.ruleset == RulesetStatus::FullyEnforced)
}

/// Moves this process into a new user namespace (its own uid and gid mapped to themselves,
/// so files and peers see the same ids) and a new network namespace, whose only interface,
/// loopback, is down: no address, not even 127.0.0.1, can be reached. The process must be
/// single-threaded (the kernel refuses a user namespace to a threaded process).
pub(crate) fn enter_private_network() -> io::Result<()> {
    let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
    // SAFETY: `unshare` takes only flags and changes this process's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // `setgroups` must be denied before an unprivileged process may write its gid map.
    let _ = std::fs::write("/proc/self/setgroups", "deny");
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))?;
    Ok(())
}

/// Whether this kernel (and its settings: `user.max_user_namespaces`, Debian's
/// `unprivileged_userns_clone`, Ubuntu's AppArmor restriction) lets this process enter a
/// private network namespace: tried once in a forked child, which then exits. `Err` says
/// what the kernel refused.
pub(crate) fn private_network_available() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe_private_network).clone()
}

fn probe_private_network() -> Result<(), String> {
    let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
    // Everything the child writes is made before the fork: it only makes system calls.
    let maps: [(&std::ffi::CStr, Vec<u8>); 3] = [
        (c"/proc/self/setgroups", b"deny".to_vec()),
        (c"/proc/self/uid_map", format!("{uid} {uid} 1").into_bytes()),
        (c"/proc/self/gid_map", format!("{gid} {gid} 1").into_bytes()),
    ];
    // SAFETY: the child makes only async-signal-safe system calls (`unshare`, `open`,
    // `write`, `_exit`) on memory prepared before the fork, then exits; the parent waits
    // for it by its pid.
    let status = unsafe {
        let pid = libc::fork();
        if pid < 0 {
            return Err(format!("cannot fork to probe: {}", io::Error::last_os_error()));
        }
        if pid == 0 {
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
                libc::_exit(1);
            }
            for (i, (path, bytes)) in maps.iter().enumerate() {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                let ok = fd >= 0 && libc::write(fd, bytes.as_ptr().cast(), bytes.len()) == bytes.len() as isize;
                // Old kernels have no `setgroups` file; the gid map then says.
                if !ok && i > 0 {
                    libc::_exit(2);
                }
            }
            libc::_exit(0);
        }
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {
        }
        status
    };
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, 1) => Err("the kernel refuses an unprivileged user namespace (user.max_user_namespaces, \
                          kernel.unprivileged_userns_clone, or an AppArmor/SELinux restriction)"
            .into()),
        (true, 2) => Err("the kernel gives a new user namespace but refuses its uid/gid map".into()),
        _ => Err(format!("the probe for a user namespace ended with status {status}")),
    }
}
