//! No orphans, no zombies: children die with their parent, even when it is SIGKILLed;
//! at a normal exit daemonic children are terminated and the others waited for.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use multiproc::Process;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

multiproc::test_init!();

fn sock_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("multiproc-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// A pidfd for a process that is not our child, or `None` if it is already gone.
fn watch(pid: u32) -> Option<OwnedFd> {
    pidfd_open(Pid::from_raw(pid as i32).unwrap(), PidfdFlags::empty()).ok()
}

/// Waits (with a generous deadline, which is not what is tested) for the process to end.
fn ends(pidfd: Option<OwnedFd>) -> bool {
    let Some(fd) = pidfd else { return true };
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let limit = Timespec { tv_sec: 60, tv_nsec: 0 };
    poll(&mut fds, Some(&limit)).unwrap() == 1
}

fn sleeps_forever(_: ()) {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Starts a grandchild, reports both pids, then blocks until the test says go.
fn parent_of_a_sleeper(args: (String, bool)) {
    let (addr, daemon) = args;
    let mut g = Process::new(sleeps_forever, ()).daemon(daemon);
    g.start().unwrap();
    let mut s = UnixStream::connect(&addr).unwrap();
    writeln!(s, "{} {}", std::process::id(), g.pid().unwrap()).unwrap();
    let mut buf = [0u8; 1];
    let _ = s.read(&mut buf);
}

fn pids(line: &str) -> (u32, u32) {
    let mut it = line.split_whitespace().map(|p| p.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

#[test]
fn a_sigkilled_parent_leaves_no_child_behind() {
    let path = sock_path("orphan");
    let listener = UnixListener::bind(&path).unwrap();
    let mut parent = Process::new(parent_of_a_sleeper, (path.to_str().unwrap().to_string(), false));
    parent.start().unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).unwrap();
    let (_, grandchild) = pids(&line);
    let watcher = watch(grandchild);
    parent.kill().unwrap();
    parent.join().unwrap();
    assert_eq!(parent.exitcode(), Some(-9));
    assert!(ends(watcher), "the grandchild {grandchild} outlived its SIGKILLed parent");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn daemonic_children_are_terminated_at_a_normal_exit() {
    let path = sock_path("daemon");
    let listener = UnixListener::bind(&path).unwrap();
    let mut parent = Process::new(parent_of_a_sleeper, (path.to_str().unwrap().to_string(), true));
    parent.start().unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).unwrap();
    let (_, grandchild) = pids(&line);
    let watcher = watch(grandchild);
    conn.write_all(b"x").unwrap(); // let the parent return normally
    parent.join().unwrap();
    assert_eq!(parent.exitcode(), Some(0));
    assert!(ends(watcher), "the daemonic grandchild {grandchild} outlived its parent");
    let _ = std::fs::remove_file(&path);
}

/// Reports, then waits for the word to finish.
fn blocks_until_told(addr: String) {
    let mut s = UnixStream::connect(&addr).unwrap();
    writeln!(s, "{}", std::process::id()).unwrap();
    let mut buf = [0u8; 1];
    let _ = s.read(&mut buf);
}

fn parent_of_a_worker(addr: String) {
    let mut g = Process::new(blocks_until_told, addr);
    g.start().unwrap();
    // Returns without joining: the exit must wait for the non-daemonic child.
}

#[test]
fn a_normal_exit_waits_for_non_daemonic_children() {
    let path = sock_path("nondaemon");
    let listener = UnixListener::bind(&path).unwrap();
    let mut parent = Process::new(parent_of_a_worker, path.to_str().unwrap().to_string());
    parent.start().unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).unwrap();
    // The parent's function has returned, but it cannot have exited: its child is still
    // blocked on us. (It could only be dead here if it had abandoned the child.)
    assert!(parent.is_alive());
    conn.write_all(b"x").unwrap();
    parent.join().unwrap();
    assert_eq!(parent.exitcode(), Some(0));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_daemonic_process_may_not_have_children() {
    fn tries(addr: String) {
        let mut g = Process::new(sleeps_forever, ());
        let e = g.start().unwrap_err();
        let mut s = UnixStream::connect(&addr).unwrap();
        writeln!(s, "{e}").unwrap();
    }
    let path = sock_path("daemon-children");
    let listener = UnixListener::bind(&path).unwrap();
    let mut d = Process::new(tries, path.to_str().unwrap().to_string()).daemon(true);
    d.start().unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).unwrap();
    d.join().unwrap();
    assert!(line.contains("daemonic processes are not allowed to have children"), "{line}");
    let _ = std::fs::remove_file(&path);
}
