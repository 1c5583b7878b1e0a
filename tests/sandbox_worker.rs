//! `PoolBuilder::sandbox`: after the initializer and before the first task; each preset
//! fails a task that breaks it with an error naming the rule, the worker is replaced and
//! the pool goes on; what the policy does not deny still works.
#![cfg(feature = "sandbox")]

use std::sync::OnceLock;

use multiproc::{Pool, Sandbox, TaskError};

multiproc::test_init!();

fn pool_with(sandbox: Sandbox) -> Pool {
    Pool::builder().processes(1).sandbox(sandbox).build().unwrap()
}

fn connect_tcp(_: ()) -> String {
    format!("{:?}", std::net::TcpStream::connect("127.0.0.1:9"))
}

fn exec_true(_: ()) -> String {
    std::os::unix::process::CommandExt::exec(&mut std::process::Command::new("true")).to_string()
}

fn unix_pair(_: ()) -> bool {
    std::os::unix::net::UnixStream::pair().is_ok()
}

fn parent_id(_: ()) -> u32 {
    std::os::unix::process::parent_id()
}

/// The task failed because its worker died, with `rule` in the message.
fn assert_denied(r: Result<impl std::fmt::Debug, TaskError>, rule: &str) {
    let err = r.unwrap_err();
    assert!(matches!(err, TaskError::WorkerDied { .. }), "{err}");
    assert!(err.to_string().contains(rule), "{err}");
}

#[test]
fn no_network_fails_the_task_naming_the_rule_and_the_pool_goes_on() {
    let pool = pool_with(Sandbox::new().no_network());
    assert_denied(pool.apply(connect_tcp, ()), "sandbox: `socket` denied (no network)");
    assert!(pool.apply(unix_pair, ()).unwrap());
    assert!(pool.stats().workers_started >= 2);
}

#[test]
fn no_exec_fails_the_task_naming_the_rule() {
    let pool = pool_with(Sandbox::new().no_exec());
    assert_denied(pool.apply(exec_true, ()), "sandbox: `execve` denied (no exec)");
    assert!(pool.apply(unix_pair, ()).unwrap());
}

#[test]
fn no_ptrace_allows_the_rest() {
    let pool = pool_with(Sandbox::new().no_ptrace());
    assert!(pool.apply(unix_pair, ()).unwrap());
}

#[test]
fn a_user_rule_fails_the_task_naming_the_call() {
    let pool = pool_with(Sandbox::new().deny_syscall("getppid", libc::SYS_getppid));
    assert_denied(pool.apply(parent_id, ()), "sandbox: `getppid` denied (user rule)");
}

static LOADED: OnceLock<usize> = OnceLock::new();

fn load(path: String) {
    LOADED.set(std::fs::read(path).unwrap().len()).unwrap();
}

fn loaded_and_passwd(_: ()) -> (usize, String) {
    let passwd = std::fs::read("/etc/passwd").map(|_| "read".to_string()).unwrap_or_else(|e| e.to_string());
    (*LOADED.get().unwrap(), passwd)
}

#[test]
fn the_initializer_reads_what_the_tasks_no_longer_may() {
    if Sandbox::support().landlock_abi.is_none() {
        eprintln!("skipped: no Landlock on this kernel");
        return;
    }
    let pool = Pool::builder()
        .processes(1)
        .initializer(load, "/etc/passwd".to_string())
        .sandbox(Sandbox::new().read_only("/usr"))
        .build()
        .unwrap();
    let (loaded, passwd) = pool.apply(loaded_and_passwd, ()).unwrap();
    assert!(loaded > 0);
    assert!(passwd.contains("Permission denied"), "{passwd}");
}

// A real `ptrace` and a real `process_vm_readv` need the raw calls: the two `unsafe` of
// this file.
#[allow(unsafe_code)]
fn attach_to_parent(_: ()) -> i64 {
    let ppid = std::os::unix::process::parent_id() as libc::pid_t;
    // SAFETY: PTRACE_ATTACH takes a pid and no pointer (the last two arguments are unused).
    unsafe { libc::ptrace(libc::PTRACE_ATTACH, ppid, std::ptr::null_mut::<libc::c_void>(), 0) }
}

/// Reads 8 bytes of its own memory through `process_vm_readv`: what a debugger does to
/// another process.
#[allow(unsafe_code)]
fn read_own_memory(_: ()) -> (isize, [u8; 8]) {
    let src = [7u8; 8];
    let mut dst = [0u8; 8];
    let local = libc::iovec { iov_base: dst.as_mut_ptr().cast(), iov_len: 8 };
    let remote = libc::iovec { iov_base: src.as_ptr() as *mut libc::c_void, iov_len: 8 };
    // SAFETY: both iovecs point to 8 live bytes of this process; `dst` is writable.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    (n, dst)
}

#[test]
fn no_ptrace_denies_attaching_to_the_parent_and_reading_another_memory() {
    let pool = pool_with(Sandbox::new().no_ptrace());
    assert_denied(pool.apply(attach_to_parent, ()), "sandbox: `ptrace` denied (no ptrace)");
    assert_denied(pool.apply(read_own_memory, ()), "sandbox: `process_vm_readv` denied (no ptrace)");
    assert!(pool.apply(unix_pair, ()).unwrap());
    // Without the preset the same read goes through.
    let open = pool_with(Sandbox::new());
    assert_eq!(open.apply(read_own_memory, ()).unwrap(), (8, [7u8; 8]));
}

fn read_passwd(_: ()) -> usize {
    std::fs::read("/etc/passwd").unwrap().len()
}

#[test]
fn a_task_that_panics_on_a_landlock_refusal_is_told_the_rule() {
    if Sandbox::support().landlock_abi.is_none() {
        eprintln!("skipped: no Landlock on this kernel");
        return;
    }
    let pool = pool_with(Sandbox::new().read_only("/usr"));
    match pool.apply(read_passwd, ()) {
        Err(TaskError::Panicked { message, .. }) => {
            assert!(message.contains("PermissionDenied"), "{message}");
            assert!(
                message.contains("[sandbox: filesystem access denied (Landlock: read-only /usr; nothing else)]"),
                "{message}"
            );
        }
        other => panic!("expected a panic on the refusal, got {other:?}"),
    }
    let stats = pool.stats();
    assert!(stats.sandbox.unwrap().contains("Landlock ABI"));
    // The same panic without Landlock says nothing of a sandbox.
    let open = pool_with(Sandbox::new().no_exec());
    assert_eq!(open.apply(read_passwd, ()).unwrap(), std::fs::read("/etc/passwd").unwrap().len());
}
