//! `Process::sandbox`: each preset denies what it says — the child dies by SIGSYS, the
//! rule named on its stderr — and allows the rest; Landlock paths confine the filesystem.
#![cfg(feature = "sandbox")]

use std::io::Write;

use multiproc::{Connection, Pipe, Process, Sandbox};

multiproc::test_init!();

const SIGSYS: i32 = 31;

fn exit_code_of<A>(f: fn(A), arg: A, sandbox: Sandbox) -> i32
where
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut p = Process::new(f, arg).sandbox(sandbox);
    p.start().unwrap();
    p.join().unwrap();
    p.exitcode().unwrap()
}

fn exec_true(_: ()) {
    let _ = std::os::unix::process::CommandExt::exec(&mut std::process::Command::new("true"));
}

fn spawn_true(conn: Connection<String>) {
    let status = std::process::Command::new("true").status();
    conn.send(status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())).unwrap();
}

fn connect_tcp(_: ()) {
    let _ = std::net::TcpStream::connect("127.0.0.1:9");
}

fn unix_pair_and_parent_id(_: ()) {
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.write_all(b"x").unwrap();
    let mut buf = [0u8; 1];
    std::io::Read::read_exact(&mut b, &mut buf).unwrap();
    let _ = std::os::unix::process::parent_id();
}

fn parent_id(_: ()) {
    let _ = std::os::unix::process::parent_id();
}

#[test]
fn no_exec_denies_running_a_program() {
    assert_eq!(exit_code_of(exec_true, (), Sandbox::new().no_exec()), -SIGSYS);
    assert_eq!(exit_code_of(unix_pair_and_parent_id, (), Sandbox::new().no_exec()), 0);
}

#[test]
fn no_exec_kills_the_child_a_task_starts_before_it_runs_anything() {
    // `Command` starts its child with posix_spawn, whose child resets every handler: it
    // dies by SIGSYS at its exec, and the task sees that status.
    let (ours, theirs) = Pipe::simplex().unwrap();
    assert_eq!(exit_code_of(spawn_true, theirs, Sandbox::new().no_exec()), 0);
    let status = ours.recv().unwrap();
    assert!(status.contains("SIGSYS"), "{status}");
}

#[test]
fn no_network_denies_an_inet_socket_and_allows_unix_ones() {
    assert_eq!(exit_code_of(connect_tcp, (), Sandbox::new().no_network()), -SIGSYS);
    assert_eq!(exit_code_of(unix_pair_and_parent_id, (), Sandbox::new().no_network()), 0);
    // Without the sandbox the same call is allowed (refused or not by the port).
    assert_eq!(exit_code_of(connect_tcp, (), Sandbox::new()), 0);
}

#[test]
fn no_ptrace_allows_the_rest() {
    assert_eq!(exit_code_of(unix_pair_and_parent_id, (), Sandbox::new().no_ptrace()), 0);
}

#[test]
fn a_user_rule_denies_its_call() {
    let deny_getppid = Sandbox::new().deny_syscall("getppid", libc::SYS_getppid);
    assert_eq!(exit_code_of(parent_id, (), deny_getppid), -SIGSYS);
}

fn read_and_write((conn, dir): (Connection<(String, String, String)>, String)) {
    let passwd = std::fs::read_to_string("/etc/passwd").map(|_| "read".to_string()).unwrap_or_else(|e| e.to_string());
    let inside =
        std::fs::write(format!("{dir}/ok"), b"ok").map(|_| "written".to_string()).unwrap_or_else(|e| e.to_string());
    let usr = std::fs::read_dir("/usr").map(|_| "listed".to_string()).unwrap_or_else(|e| e.to_string());
    conn.send((passwd, inside, usr)).unwrap();
}

#[test]
fn landlock_paths_allow_only_what_they_name() {
    if Sandbox::support().landlock_abi.is_none() {
        eprintln!("skipped: no Landlock on this kernel");
        return;
    }
    let dir = std::env::temp_dir().join(format!("multiproc-landlock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ours, theirs) = Pipe::simplex().unwrap();
    let sandbox = Sandbox::new().read_only("/usr").read_write(&dir);
    let code = exit_code_of(read_and_write, (theirs, dir.to_string_lossy().into_owned()), sandbox);
    let (passwd, inside, usr) = ours.recv().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0);
    assert!(passwd.contains("Permission denied"), "{passwd}");
    assert_eq!(inside, "written");
    assert_eq!(usr, "listed");
}

// A real `ptrace` needs the raw call: the one `unsafe` of this file.
#[allow(unsafe_code)]
fn attach_to_parent(_: ()) {
    let ppid = std::os::unix::process::parent_id() as libc::pid_t;
    // SAFETY: PTRACE_ATTACH takes a pid and no pointer (the last two arguments are unused).
    let _ = unsafe { libc::ptrace(libc::PTRACE_ATTACH, ppid, std::ptr::null_mut::<libc::c_void>(), 0) };
}

#[test]
fn no_ptrace_denies_attaching_to_the_parent() {
    assert_eq!(exit_code_of(attach_to_parent, (), Sandbox::new().no_ptrace()), -SIGSYS);
}

fn read_passwd(_: ()) {
    std::fs::read("/etc/passwd").unwrap();
}

#[test]
fn a_child_that_panics_on_a_landlock_refusal_names_the_rule_on_its_stderr() {
    if Sandbox::support().landlock_abi.is_none() {
        eprintln!("skipped: no Landlock on this kernel");
        return;
    }
    // The child is this test binary again: run it alone, its stderr captured.
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "landlock_refusal_inside", "--ignored", "--nocapture"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sandbox: filesystem access denied (Landlock: read-only /usr; nothing else)"), "{stderr}");
}

/// Run by the test above, whose stderr it writes to.
#[test]
#[ignore = "run by a_child_that_panics_on_a_landlock_refusal_names_the_rule_on_its_stderr"]
fn landlock_refusal_inside() {
    assert_eq!(exit_code_of(read_passwd, (), Sandbox::new().read_only("/usr")), 1);
}
