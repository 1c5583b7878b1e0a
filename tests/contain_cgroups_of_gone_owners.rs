//! An owner killed while a worker is still starting (after the worker's cgroup was made,
//! before its guard runs) leaves that cgroup behind, empty: no guard exists to remove it.
//! The next process to use cgroup containment under the same cgroup removes it, the
//! first time it looks there, as it removes every empty cgroup named after an owner that
//! no longer exists; and it touches nothing else: a live owner's cgroup, a cgroup still
//! holding a process, a cgroup multiproc did not name.
//!
//! Skipped (with a note) on a machine where no cgroup can be written.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use multiproc::{Connection, Contain, Containment, Pool, Process};

mod contain_common;
use contain_common::*;

multiproc::test_init!();

/// SIGABRT's number on Linux.
const SIGABRT: i32 = 6;

fn double(x: u64) -> u64 {
    2 * x
}

/// A pid that no process has: a child that has ended and been reaped.
fn gone_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// In a process of its own, so that this is its first look at the cgroup base: a pool
/// contained as the machine allows, and one task; sends how the pool was contained.
fn first_look(conn: Connection<Containment>) {
    let pool = Pool::builder().processes(1).contain(Contain::Auto).build().unwrap();
    assert_eq!(pool.apply(double, 21).unwrap(), 42);
    conn.send(pool.stats().containment).unwrap();
    pool.close();
    pool.join().unwrap();
}

/// Runs [`first_look`] in a new process under this process's cgroup (uncontained itself,
/// so that its base is this process's cgroup).
fn look_from_a_new_process() -> Containment {
    let (ours, theirs) = multiproc::Pipe::simplex::<Containment>().unwrap();
    let mut p = Process::new(first_look, theirs).contain(Contain::Off);
    p.start().unwrap();
    let containment = ours.recv().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    containment
}

/// Waits, on its `cgroup.events`, until the cgroup `dir` holds no process or is gone;
/// panics after [`DEADLINE`].
fn wait_unpopulated(dir: &Path) {
    let since = Instant::now();
    let Ok(events) = std::fs::File::open(dir.join("cgroup.events")) else { return };
    loop {
        match std::fs::read_to_string(dir.join("cgroup.events")) {
            Ok(s) if s.lines().any(|l| l == "populated 1") => {}
            _ => return,
        }
        assert!(since.elapsed() < DEADLINE, "{} still holds a process", dir.display());
        // The kernel signals a change of `populated` as an exceptional condition.
        let mut fds = [rustix::event::PollFd::new(&events, rustix::event::PollFlags::PRI)];
        let slice = rustix::event::Timespec { tv_sec: 1, tv_nsec: 0 };
        let _ = rustix::event::poll(&mut fds, Some(&slice));
    }
}

/// Where a test's own cgroups go, or `None` (with a note) where none can be made.
fn writable_base() -> Option<PathBuf> {
    let base = own_cgroup_dir()?;
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = base.join(format!("test-probe-{}-{n}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&probe) {
        eprintln!("no writable cgroup v2 here ({e}): nothing to test");
        return None;
    }
    std::fs::remove_dir(&probe).unwrap();
    Some(base)
}

#[test]
fn empty_cgroups_of_owners_that_are_gone_are_removed_and_nothing_else() {
    let Some(base) = writable_base() else { return };
    let gone = gone_pid();
    let mut live_owner = Command::new("sleep").arg("300").spawn().unwrap();
    let live = live_owner.id();
    let removed =
        [format!("multiproc-{gone}-1"), format!("multiproc-{gone}-2-forks"), format!("multiproc-probe-{gone}")];
    let kept = [format!("multiproc-{live}-3"), format!("elsewhere-{gone}-4"), format!("multiproc-{gone}-5")];
    for name in removed.iter().chain(&kept) {
        std::fs::create_dir(base.join(name)).unwrap();
    }
    // A fork server's subtree, with a worker's cgroup kept for reuse in it. (Another
    // process's first look, a test running beside this one, may remove what is made
    // here for owner `gone` at any time: made again until it holds what it should.)
    std::fs::create_dir_all(base.join(&removed[1]).join("w7")).unwrap();
    // A gone owner's cgroup that still holds a process (a child still dying, say).
    let mut holder = Command::new("sleep").arg("300").spawn().unwrap();
    while let Err(e) = std::fs::write(base.join(&kept[2]).join("cgroup.procs"), holder.id().to_string()) {
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "moving the holder in: {e}");
        let _ = std::fs::create_dir(base.join(&kept[2]));
    }

    let containment = look_from_a_new_process();

    let present: Vec<_> = removed.iter().chain(&kept).filter(|n| base.join(n).exists()).cloned().collect();
    for p in [&mut live_owner, &mut holder] {
        p.kill().unwrap();
        p.wait().unwrap();
    }
    wait_unpopulated(&base.join(&kept[2]));
    for name in &kept {
        // The holder's, empty now, may already be gone: another look took it.
        match std::fs::remove_dir(base.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("removing {name}: {e}"),
            _ => {}
        }
    }
    if containment != Containment::Cgroup {
        eprintln!("the pool was contained by {containment}: no cgroup base was looked at");
        return;
    }
    assert_eq!(present, kept, "only the empty cgroups of owner {gone}, gone, were removed");
}

/// An owner that builds a pool of two, maps, and aborts at once: the moment a worker
/// may still be starting.
fn owner_aborts_right_after_build(conn: Connection<u32>) {
    conn.send(std::process::id()).unwrap();
    let pool = Pool::builder().processes(2).contain(Contain::Auto).build().unwrap();
    let _ = pool.map(double, 0..4u64);
    std::process::abort();
}

#[test]
fn owners_killed_while_their_workers_start_leave_nothing_after_the_next_look() {
    let Some(base) = writable_base() else { return };
    let mut owners = Vec::new();
    for _ in 0..4 {
        let (ours, theirs) = multiproc::Pipe::simplex::<u32>().unwrap();
        let mut p = Process::new(owner_aborts_right_after_build, theirs).contain(Contain::Off);
        p.start().unwrap();
        owners.push(ours.recv().unwrap());
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(-SIGABRT), "the owner aborted");
    }
    // Whatever its guards were still doing is done: no process is left in them.
    for owner in &owners {
        for name in cgroups_of(&base, *owner) {
            wait_unpopulated(&base.join(name));
        }
    }
    let left_before: usize = owners.iter().map(|o| cgroups_of(&base, *o).len()).sum();
    if look_from_a_new_process() != Containment::Cgroup {
        eprintln!("no cgroup containment here: nothing to test");
        return;
    }
    eprintln!("{left_before} cgroups of {} aborted owners were left before the look", owners.len());
    for owner in owners {
        assert_eq!(cgroups_of(&base, owner), Vec::<String>::new(), "owner {owner}'s cgroups after the look");
    }
}
