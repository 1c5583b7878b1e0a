//! A fork server's workers, contained by cgroups, have one guard for them all (the
//! template starts it, once): their cgroups are made under one subtree, which the guard
//! kills and removes when the owner is SIGKILLed. What a task started dies, and no cgroup
//! of the owner is left — also when the template was killed (and started again) before,
//! so that the guard outlives the template that started it.
//!
//! Skipped (with a note) on a machine where no cgroup can be written.

use std::path::{Path, PathBuf};

use multiproc::{Connection, Contain, Containment, Pool, Process, StartMethod};

mod contain_common;
use contain_common::*;

multiproc::test_init!();

/// This process's cgroup v2 directory (where a pool's cgroups are made), if any.
fn own_cgroup_dir() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2").then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim_start_matches('/').to_string();
    Some(mount.join(own))
}

/// The cgroups of process `pid` still present under `base`.
fn cgroups_of(base: &Path, pid: u32) -> Vec<String> {
    let prefix = format!("multiproc-{pid}-");
    let Ok(dir) = std::fs::read_dir(base) else { return Vec::new() };
    dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(&prefix)).collect()
}

/// The children of process `pid` (its guard, for a template).
fn children_of(pid: u32) -> Vec<u32> {
    let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    list.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// What the owner sends: the escapers its tasks started, and the guard of its subtree
/// (empty where cgroups cannot be had).
type Started = (Vec<u32>, Vec<u32>);

/// The owner: a fork-server pool whose task starts a daemon; with `kill_template`, the
/// template is SIGKILLed first and a second task starts a daemon from a new template's
/// worker. Sends what was started, then waits to be SIGKILLed.
fn owner((conn, kill_template): (Connection<Started>, bool)) {
    let pool =
        Pool::builder().processes(1).start_method(StartMethod::ForkServer).contain(Contain::Auto).build().unwrap();
    if pool.stats().containment != Containment::Cgroup {
        eprintln!("no writable cgroup v2 here: the workers are contained by {}", pool.stats().containment);
        return conn.send((Vec::new(), Vec::new())).unwrap();
    }
    let template = pool.stats().fork_server_pid.expect("a fork server runs");
    let guards = children_of(template);
    assert_eq!(guards.len(), 1, "the template has one child, the guard of its workers' cgroups");
    let mut escapers = vec![pool.apply(escape, "daemon".to_string()).unwrap()];
    if kill_template {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(template as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        wait_gone(template, "the template SIGKILLed");
        // The worker that ran the first task ends, so that the next one is forked by a new template.
        pool.apply(kill_own_worker, ()).unwrap_err();
        escapers.push(pool.apply(escape, "daemon".to_string()).unwrap());
        assert_eq!(pool.stats().fork_servers_started, 2, "the template was started again");
    }
    conn.send((escapers, guards)).unwrap();
    loop {
        std::thread::park();
    }
}

fn kill_own_worker(_: ()) {
    std::process::abort();
}

fn owner_killed(kill_template: bool) {
    let Some(base) = own_cgroup_dir() else { return };
    let (ours, theirs) = multiproc::Pipe::simplex::<Started>().unwrap();
    let mut p = Process::new(owner, (theirs, kill_template)).contain(Contain::Off);
    p.start().unwrap();
    let owner_pid = p.pid().unwrap();
    let (escapers, guards) = ours.recv().unwrap();
    p.kill().unwrap();
    p.join().unwrap();
    for pid in escapers {
        wait_gone(pid, "a daemon started by a fork-server worker, its owner SIGKILLed");
    }
    // The guard removes every cgroup before it ends.
    for pid in guards {
        wait_gone(pid, "the guard of a killed owner's subtree");
    }
    assert_eq!(cgroups_of(&base, owner_pid), Vec::<String>::new(), "cgroups left by the killed owner");
}

#[test]
fn an_owner_sigkilled_leaves_no_process_and_no_cgroup() {
    owner_killed(false);
}

#[test]
fn the_guard_outlives_a_template_killed_before_the_owner() {
    owner_killed(true);
}

/// A pool closed and dropped while its owner lives: its subtree is gone, and so is the
/// guard (told by the pipe the owner closed).
#[test]
fn a_pool_dropped_removes_its_subtree_and_ends_its_guard() {
    let Some(base) = own_cgroup_dir() else { return };
    let (ours, theirs) = multiproc::Pipe::simplex::<(Vec<String>, Vec<u32>)>().unwrap();
    let mut p = Process::new(drop_a_pool, theirs).contain(Contain::Off);
    p.start().unwrap();
    let (left, guards) = ours.recv().unwrap();
    p.join().unwrap();
    assert_eq!(left, Vec::<String>::new(), "cgroups left by a dropped pool under {}", base.display());
    for pid in guards {
        wait_gone(pid, "the guard of a dropped pool");
    }
}

/// In its own process (so that the cgroups it finds are its own): a pool whose task left
/// a daemon, dropped; sends the cgroups left and the guard's pid.
fn drop_a_pool(conn: Connection<(Vec<String>, Vec<u32>)>) {
    let base = own_cgroup_dir().unwrap();
    let pool =
        Pool::builder().processes(2).start_method(StartMethod::ForkServer).contain(Contain::Auto).build().unwrap();
    if pool.stats().containment != Containment::Cgroup {
        return conn.send((Vec::new(), Vec::new())).unwrap();
    }
    let guards = children_of(pool.stats().fork_server_pid.unwrap());
    let escaper = pool.apply(escape, "setsid".to_string()).unwrap();
    drop(pool);
    wait_gone(escaper, "a daemon of a dropped pool");
    conn.send((cgroups_of(&base, std::process::id()), guards)).unwrap();
}
