//! Exit codes as Python reports them: 0, 1 after a panic, `-N` after signal N.

use std::time::Duration;

use multiproc::Process;

multiproc::test_init!();

fn nothing(_: ()) {}

fn panics(msg: String) {
    panic!("{msg}");
}

fn exits_with(code: i32) {
    std::process::exit(code);
}

fn sleeps(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}

#[test]
fn a_function_that_returns_exits_with_zero() {
    let mut p = Process::new(nothing, ());
    assert!(p.pid().is_none());
    assert_eq!(p.exitcode(), None);
    p.start().unwrap();
    assert!(p.pid().is_some());
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
}

#[test]
fn a_panic_exits_with_one() {
    let mut p = Process::new(panics, "boom in the child".to_string());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(1));
}

#[test]
fn exit_codes_pass_through() {
    let mut p = Process::new(exits_with, 7);
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(7));
}

#[test]
fn kill_gives_minus_nine_and_terminate_minus_fifteen() {
    let mut k = Process::new(sleeps, 600);
    let mut t = Process::new(sleeps, 600);
    k.start().unwrap();
    t.start().unwrap();
    assert!(k.is_alive() && t.is_alive());
    k.kill().unwrap();
    t.terminate().unwrap();
    k.join().unwrap();
    t.join().unwrap();
    assert_eq!(k.exitcode(), Some(-9));
    assert_eq!(t.exitcode(), Some(-15));
}

#[test]
fn join_timeout_on_a_sleeping_child_returns_false_then_true() {
    let mut p = Process::new(sleeps, 600);
    p.start().unwrap();
    assert!(!p.join_timeout(Duration::from_millis(50)).unwrap());
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    p.kill().unwrap();
    assert!(p.join_timeout(Duration::from_secs(60)).unwrap());
    assert_eq!(p.exitcode(), Some(-9));
}

#[test]
fn joining_or_killing_an_unstarted_process_is_an_error() {
    let p = Process::new(nothing, ());
    assert!(p.join().unwrap_err().to_string().contains("started"));
    assert!(p.terminate().is_err());
}

#[test]
fn a_process_starts_only_once() {
    let mut p = Process::new(nothing, ());
    p.start().unwrap();
    assert!(p.start().unwrap_err().to_string().contains("once"));
    p.join().unwrap();
}

/// Sends its own stderr to `path`, then runs a child that panics (which inherits it).
fn panicking_child_with_stderr_in(path: String) {
    let file = std::fs::File::create(&path).unwrap();
    rustix::stdio::dup2_stderr(&file).unwrap();
    let mut p = Process::new(panics, "the message of the panic".to_string()).name("doomed");
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(1));
}

#[test]
fn a_panic_prints_its_message_and_location_on_the_childs_stderr() {
    let path = std::env::temp_dir().join(format!("multiproc-stderr-{}.txt", std::process::id()));
    let mut p = Process::new(panicking_child_with_stderr_in, path.to_str().unwrap().to_string());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    let err = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(err.contains("Process doomed"), "{err}");
    assert!(err.contains("the message of the panic"), "{err}");
    assert!(err.contains("tests/process_exit_codes.rs:"), "{err}");
}

#[test]
fn an_endless_start_timeout_means_no_deadline() {
    let mut p = Process::new(nothing, ()).start_timeout(Duration::MAX);
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}
