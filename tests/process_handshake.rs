//! A child that is not what it should be is refused with a clear error, never a hang:
//! one that dies before or during its handshake, stalls, sends garbage, a cut or an
//! oversized frame, or runs a different build. And an argument that does not serialize
//! starts no process at all.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use multiproc::{Error, Process};

multiproc::test_init!();

fn nothing(_: ()) {}

/// A fresh directory for this test's files, removed at drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("multiproc-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_with(exe: &Path, timeout: Duration) -> (Process, Error) {
    let mut p = Process::new(nothing, ()).executable(exe).start_timeout(timeout);
    let e = p.start().unwrap_err();
    (p, e)
}

#[test]
fn a_child_that_exits_before_the_handshake_is_reported_with_its_exit_code() {
    let dir = TempDir::new("exits");
    let (p, e) = start_with(&dir.script("child", "exit 3"), Duration::from_secs(30));
    match e {
        Error::DiedDuringStart { exitcode, .. } => assert_eq!(exitcode, 3),
        other => panic!("unexpected: {other}"),
    }
    assert!(p.pid().is_none());
}

#[test]
fn a_child_that_dies_during_the_handshake_is_reported() {
    let dir = TempDir::new("during");
    // Reads the first bytes of the hello, then dies.
    let (_, e) = start_with(&dir.script("child", "head -c 8 <&3 >/dev/null\nexit 4"), Duration::from_secs(30));
    match e {
        Error::DiedDuringStart { exitcode, .. } => assert_eq!(exitcode, 4),
        other => panic!("unexpected: {other}"),
    }
}

#[test]
fn a_child_that_never_answers_is_killed_at_the_deadline() {
    let dir = TempDir::new("stalls");
    let (_, e) = start_with(&dir.script("child", "exec sleep 600"), Duration::from_millis(300));
    assert!(matches!(e, Error::StartTimeout { .. }), "{e}");
    assert!(e.to_string().contains("init()"), "the message says what to check: {e}");
}

#[test]
fn garbage_from_the_child_is_a_protocol_error() {
    let dir = TempDir::new("garbage");
    let (_, e) =
        start_with(&dir.script("child", "printf 'garbage!garbage!' >&3\nexec sleep 600"), Duration::from_secs(30));
    match e {
        Error::Protocol { source, .. } => assert!(source.to_string().contains("malformed"), "{source}"),
        other => panic!("unexpected: {other}"),
    }
}

#[test]
fn a_cut_frame_from_the_child_is_a_protocol_error() {
    let dir = TempDir::new("cut");
    // A reply header announcing 100 bytes, then 3 bytes, then end of file.
    let (_, e) =
        start_with(&dir.script("child", r"printf '\144\000\000\000\242\000\000\000abc' >&3"), Duration::from_secs(30));
    match e {
        Error::Protocol { source, .. } => assert!(source.to_string().contains("cut short"), "{source}"),
        other => panic!("unexpected: {other}"),
    }
}

#[test]
fn an_oversized_frame_from_the_child_is_refused_without_reading_it() {
    let dir = TempDir::new("oversized");
    let (_, e) = start_with(
        &dir.script(
            "child",
            r"printf '\377\377\377\377\242\000\000\000' >&3
exec sleep 600",
        ),
        Duration::from_secs(30),
    );
    match e {
        Error::Protocol { source, .. } => assert!(source.to_string().contains("exceeds the maximum"), "{source}"),
        other => panic!("unexpected: {other}"),
    }
}

#[test]
fn an_argument_larger_than_the_frame_limit_starts_nothing() {
    fn takes(_: Vec<u64>) {}
    let mut p = Process::new(takes, vec![7u64; 4096]).max_frame_size(1024);
    let e = p.start().unwrap_err();
    assert!(e.to_string().contains("exceeds the maximum"), "{e}");
    assert!(p.pid().is_none());
}

#[test]
fn a_different_build_is_refused_before_it_runs_anything() {
    let dir = TempDir::new("other-build");
    // The same program with bytes appended: it runs, but it is not this build.
    let copy = dir.0.join("other-build");
    std::fs::copy("/proc/self/exe", &copy).unwrap();
    std::fs::OpenOptions::new().append(true).open(&copy).unwrap().write_all(b"another build").unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_, e) = start_with(&copy, Duration::from_secs(60));
    match &e {
        Error::WrongBinary { expected, found, .. } => assert_ne!(expected, found),
        other => panic!("unexpected: {other}"),
    }
    assert!(e.to_string().contains("different build"), "{e}");
}

#[test]
fn an_argument_that_does_not_serialize_starts_no_process() {
    struct Refuses;
    impl serde::Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("this value stays home"))
        }
    }
    impl<'de> serde::Deserialize<'de> for Refuses {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Refuses, D::Error> {
            Ok(Refuses)
        }
    }
    fn takes(_: Refuses) {}
    let mut p = Process::new(takes, Refuses);
    let e = p.start().unwrap_err();
    assert!(matches!(e, Error::Codec(_)), "{e}");
    assert!(e.to_string().contains("cannot encode") && e.to_string().contains("Refuses"), "{e}");
    assert!(p.pid().is_none());
}

#[test]
fn a_missing_executable_is_a_spawn_error() {
    let (_, e) = start_with(Path::new("/nonexistent/multiproc-child"), Duration::from_secs(5));
    assert!(matches!(e, Error::Spawn { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/multiproc-child"), "{e}");
}
