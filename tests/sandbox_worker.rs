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
