//! `Process::limits`: each limit is in force in the child before its target runs, and a
//! CPU time limit ends a child that spins with SIGXCPU.

use std::io::Write;
use std::time::Duration;

use multiproc::{Connection, Limits, Pipe, Process};

multiproc::test_init!();

const SIGXCPU: i32 = 24;

fn run<A>(f: fn(A), arg: A, limits: Limits) -> Process
where
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut p = Process::new(f, arg).limits(limits);
    p.start().unwrap();
    p.join().unwrap();
    p
}

fn spin(_: ()) {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

#[test]
fn a_cpu_time_limit_ends_a_spinning_child_with_sigxcpu() {
    let p = run(spin, (), Limits::new().cpu_time(Duration::from_secs(1)));
    assert_eq!(p.exitcode(), Some(-SIGXCPU), "{}", multiproc::signal_name(-p.exitcode().unwrap()));
}

fn open_until_refused(conn: Connection<(usize, String)>) {
    let mut files = Vec::new();
    let err = loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) => break e,
        }
        if files.len() > 10_000 {
            break std::io::Error::other("no limit");
        }
    };
    conn.send((files.len(), err.to_string())).unwrap();
}

#[test]
fn an_open_files_limit_refuses_descriptors_past_it() {
    let (ours, theirs) = Pipe::simplex().unwrap();
    let p = run(open_until_refused, theirs, Limits::new().open_files(32));
    let (opened, err) = ours.recv().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert!(opened < 32, "{opened} files opened under a limit of 32");
    assert!(err.contains("Too many open files"), "{err}");
}

fn write_big((conn, path): (Connection<String>, String)) {
    let mut f = std::fs::File::create(&path).unwrap();
    let r = f.write_all(&[7u8; 10_000]);
    let _ = std::fs::remove_file(&path);
    conn.send(format!("{r:?}")).unwrap();
}

#[test]
fn a_file_size_limit_fails_a_write_past_it() {
    let (ours, theirs) = Pipe::simplex().unwrap();
    let path = std::env::temp_dir().join(format!("multiproc-fsize-{}", std::process::id()));
    let p = run(write_big, (theirs, path.to_string_lossy().into_owned()), Limits::new().file_size(4096));
    let r = ours.recv().unwrap();
    assert_eq!(p.exitcode(), Some(0), "the child died instead of seeing the error");
    assert!(r.contains("File too large"), "{r}");
}

fn report_settings(conn: Connection<(i32, usize, Option<u64>)>) {
    let nice = rustix::process::getpriority_process(None).unwrap();
    let nproc = rustix::process::getrlimit(rustix::process::Resource::Nproc).current;
    conn.send((nice, multiproc::cpu_count(), nproc)).unwrap();
}

#[test]
fn niceness_affinity_and_the_process_limit_are_set_in_the_child() {
    let (ours, theirs) = Pipe::simplex().unwrap();
    let limits = Limits::new().nice(7).cpu_affinity([0]).processes(5000);
    let p = run(report_settings, theirs, limits);
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(ours.recv().unwrap(), (7, 1, Some(5000)));
}

#[test]
fn a_bad_limit_fails_start_naming_it() {
    let mut p = Process::new(spin, ()).limits(Limits::new().nice(99));
    let err = p.start().unwrap_err().to_string();
    assert!(err.contains("nice"), "{err}");
    assert!(p.pid().is_none());
}
