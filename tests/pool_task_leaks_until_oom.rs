//! A task that allocates until memory runs out, in a program that itself holds more
//! memory than the task's worker: the kernel's OOM killer picks the process with the
//! most memory, which was the program, so the program died of what a task did. A worker
//! now raises its OOM score adjustment by 500 before any user code: the OOM killer takes
//! the leaking worker, the task fails (`WorkerDied`, SIGKILL), the program and its pool
//! go on.
//!
//! The memory runs out in a memory cgroup of the test's own (cgroup v1's memory
//! controller, 256 MiB): skipped, with a note, where none can be made.

use std::path::{Path, PathBuf};

use multiproc::{Connection, Contain, Pipe, Pool, Process, TaskError};

multiproc::test_init!();

/// The memory cgroup's limit.
const LIMIT: u64 = 256 << 20;
/// What the program holds: more than its worker will when memory runs out.
const PROGRAM_HOLDS: usize = 150 << 20;

/// A memory cgroup of cgroup v1 under this process's own, limited to [`LIMIT`], or `None`.
fn memory_cgroup() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut fields = right.split_whitespace();
        let is_memcg = fields.next()? == "cgroup" && fields.nth(1)?.split(',').any(|o| o == "memory");
        is_memcg.then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p.trim_start_matches('/').to_string()))?;
    let dir = mount.join(own).join(format!("multiproc-oom-test-{}", std::process::id()));
    std::fs::create_dir(&dir).ok()?;
    if std::fs::write(dir.join("memory.limit_in_bytes"), LIMIT.to_string()).is_err() {
        let _ = std::fs::remove_dir(&dir);
        return None;
    }
    Some(dir)
}

/// Allocates and touches memory until it is killed.
fn leak(_: ()) -> usize {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        kept.push(vec![1u8; 4 << 20]);
        std::hint::black_box(&kept);
    }
}

fn double(x: u64) -> u64 {
    2 * x
}

/// The program: moves into the memory cgroup, holds [`PROGRAM_HOLDS`] bytes, runs the
/// leaking task, then another; sends what they gave.
fn program((conn, procs): (Connection<(String, bool)>, String)) {
    std::fs::write(&procs, std::process::id().to_string()).unwrap();
    let held = vec![7u8; PROGRAM_HOLDS];
    let pool = Pool::builder().processes(1).contain(Contain::Auto).build().unwrap();
    let leaked = pool.apply(leak, ());
    let after = pool.apply(double, 21);
    std::hint::black_box(&held);
    let killed = matches!(leaked, Err(TaskError::WorkerDied { signal: Some(9), .. }));
    conn.send((format!("{leaked:?}"), killed && after == Ok(42))).unwrap();
    pool.close();
    pool.join().unwrap();
}

/// Waits for every process in the cgroup `dir` to be gone (on their pidfds), then removes it.
fn remove(dir: &Path) {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let Some(pid) = rustix::process::Pid::from_raw(pid) else { continue };
        if let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
            let limit = rustix::event::Timespec { tv_sec: 60, tv_nsec: 0 };
            let _ = rustix::event::poll(&mut fds, Some(&limit));
        }
    }
    std::fs::remove_dir(dir).unwrap();
}

#[test]
fn a_task_that_exhausts_memory_costs_its_worker_not_the_program() {
    let Some(dir) = memory_cgroup() else {
        eprintln!("no memory cgroup can be made here: nothing to test");
        return;
    };
    let (ours, theirs) = Pipe::simplex::<(String, bool)>().unwrap();
    let procs = dir.join("cgroup.procs").to_string_lossy().into_owned();
    let mut p = Process::new(program, (theirs, procs)).contain(Contain::Off);
    p.start().unwrap();
    let answer = ours.recv();
    p.join().unwrap();
    let code = p.exitcode();
    remove(&dir);
    assert_eq!(code, Some(0), "the program survived its task's leak");
    let (leaked, ok) = answer.unwrap();
    assert!(ok, "the leaking task failed with WorkerDied (SIGKILL), the next task ran: {leaked}");
}
