//! A fork server's workers, contained by cgroups, have one guard for them all (the
//! template starts it, once): their cgroups are made under one subtree, which the guard
//! kills and removes when the owner is SIGKILLed. What a task started dies, and no cgroup
//! of the owner is left — also when the template was killed (and started again) before,
//! so that the guard outlives the template that started it.
//!
//! Skipped (with a note) on a machine where no cgroup can be written.

use std::path::Path;

use multiproc::{Connection, Contain, Containment, Pool, Process, StartMethod};

mod contain_common;
use contain_common::*;
mod own_sockets;
use own_sockets::each_own_socket;

multiproc::test_init!();

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

/// The cgroups under the subtree of the fork server of process `pid`.
fn worker_cgroups(base: &Path, pid: u32) -> Vec<String> {
    let Some(subtree) = cgroups_of(base, pid).into_iter().find(|n| n.ends_with("-forks")) else { return Vec::new() };
    let Ok(dir) = std::fs::read_dir(base.join(subtree)) else { return Vec::new() };
    dir.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// In its own process: workers that end leaving nothing behind have their cgroup used
/// again by their replacements; one whose task left a daemon has it killed, and its
/// cgroup is not used again. Sends the most cgroups seen in the subtree, and what
/// outlived the worker.
fn replacements(conn: Connection<(usize, Vec<u32>, Vec<String>)>) {
    let base = own_cgroup_dir().unwrap();
    let pool =
        Pool::builder().processes(1).start_method(StartMethod::ForkServer).contain(Contain::Auto).build().unwrap();
    if pool.stats().containment != Containment::Cgroup {
        return conn.send((0, Vec::new(), Vec::new())).unwrap();
    }
    let me = std::process::id();
    let mut most = 0;
    for _ in 0..5 {
        pool.apply(kill_own_worker, ()).unwrap_err();
        most = most.max(worker_cgroups(&base, me).len());
    }
    let daemon = pool.apply(escape, "daemon".to_string()).unwrap();
    pool.apply(kill_own_worker, ()).unwrap_err();
    wait_gone(daemon, "a daemon whose worker died, in a fork server's subtree");
    // Its replacement runs, in a cgroup where no daemon was left.
    let second = pool.apply(escape, "setsid".to_string()).unwrap();
    drop(pool);
    wait_gone(second, "an escaper of a dropped pool's worker, in a cgroup used again");
    let running = [daemon, second].into_iter().filter(|p| alive(*p)).collect();
    conn.send((most, running, cgroups_of(&base, me))).unwrap();
}

#[test]
fn an_emptied_cgroup_serves_the_next_worker_and_a_populated_one_is_killed() {
    if own_cgroup_dir().is_none() {
        return;
    }
    let (ours, theirs) = multiproc::Pipe::simplex::<(usize, Vec<u32>, Vec<String>)>().unwrap();
    let mut p = Process::new(replacements, theirs).contain(Contain::Off);
    p.start().unwrap();
    let (most, running, left) = ours.recv().unwrap();
    p.join().unwrap();
    assert!(most <= 2, "{most} worker cgroups for one worker replaced five times: emptied ones are used again");
    assert_eq!(running, Vec::<u32>::new(), "escapers still running");
    assert_eq!(left, Vec::<String>::new(), "cgroups left by a dropped pool");
}

/// Shuts down every socket of its worker, then hangs: the pool kills the worker (and its
/// cgroup) once it has heard the hang-up.
fn shut_sockets_then_hang(_: ()) {
    each_own_socket(|dup| {
        let _ = rustix::net::shutdown(dup, rustix::net::Shutdown::Both);
    });
    loop {
        std::thread::park();
    }
}

fn double(x: u64) -> u64 {
    2 * x
}

/// Found by tests/pool_worker_closes_socket.rs under the fork server: the cgroup of a
/// worker the pool killed (`cgroup.kill`) was used again for its replacement, and some
/// kernels kill every process created inside a cgroup killed once (`CLONE_INTO_CGROUP`):
/// every replacement died before its handshake. A killed cgroup is never used again.
#[test]
fn a_late_kill_of_an_ended_worker_spares_the_worker_in_its_cgroup_now() {
    let pool =
        Pool::builder().processes(1).start_method(StartMethod::ForkServer).contain(Contain::Auto).build().unwrap();
    for round in 0..3 {
        assert!(pool.apply(shut_sockets_then_hang, ()).is_err(), "round {round}: the task's worker is killed");
        assert_eq!(pool.apply(double, 21).unwrap(), 42, "round {round}: its replacement works");
    }
}
