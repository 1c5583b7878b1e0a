//! A test binary that hangs is stopped by `test_init!`'s watchdog with a message naming
//! it, so a hang fails a CI run instead of holding it.

use std::process::Command;

multiproc::test_init!();

/// Hangs for ever (run only by the test below, in a binary of its own).
#[test]
#[ignore = "hangs on purpose: run by a_hanging_test_binary_is_aborted_with_a_message"]
fn hangs() {
    let (_keep, never) = std::sync::mpsc::channel::<()>();
    let _ = never.recv();
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
