//! A test binary that hangs is stopped by `test_init!`'s watchdog with a message naming
//! it, so a hang fails a CI run instead of holding it, and what it started dies with it.

use std::process::{Command, Stdio};

multiproc::test_init!();

/// Hangs for ever (run only by the test below, in a binary of its own).
#[test]
#[ignore = "hangs on purpose: run by a_hanging_test_binary_is_aborted_with_a_message"]
fn hangs() {
    // A child of its own, as a test's broker is: the watchdog must take it along.
    let mut child = Command::new("sleep").arg("600").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    eprintln!("CHILD {}", child.id());
    // The hang: waiting for a child that sleeps far longer than the watchdog allows.
    let _ = child.wait();
}

#[test]
fn a_hanging_test_binary_is_aborted_with_a_message() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hangs", "--ignored", "--nocapture"])
        .env("MULTIPROC_TEST_WATCHDOG", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("still running after 1 s: a test hangs"), "{stderr}");
    let pid: i32 = stderr.lines().find_map(|l| l.strip_prefix("CHILD ")).unwrap().trim().parse().unwrap();
    // Gone, or on its way: its pidfd (if it still exists) becomes readable when it ends.
    if let Ok(pidfd) =
        rustix::process::pidfd_open(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::PidfdFlags::empty())
    {
        let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
        let patience = rustix::time::Timespec { tv_sec: 60, tv_nsec: 0 };
        assert_eq!(rustix::event::poll(&mut fds, Some(&patience)).unwrap(), 1, "the hung test's child lives on");
    }
}

#[test]
fn a_garbled_setting_is_named() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hangs", "--ignored"])
        .env("MULTIPROC_TEST_WATCHDOG", "soon")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("MULTIPROC_TEST_WATCHDOG=\"soon\""), "{stderr}");
}
