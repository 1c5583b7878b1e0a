//! A shared `ForkServer`'s workers, contained by cgroups, have one guard for them all, as
//! a pool's own template's do: their cgroups (some made ahead, when the server starts) are
//! under one subtree, which the guard kills and removes when the owner is SIGKILLed, and
//! which the server removes when the last pool and handle are dropped. No worker starts a
//! guard of its own: the template has one child, the guard.
//!
//! Skipped (with a note) on a machine where no cgroup can be written.

use multiproc::{Connection, Containment, ForkServer, Pool, Process};

mod contain_common;
use contain_common::*;

multiproc::test_init!();

/// The children of process `pid` (its guard, for a template).
fn children_of(pid: u32) -> Vec<u32> {
    let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    list.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// What the owner sends: the escapers its tasks started, the guard of the server's
/// subtree and the pools' workers' children (empty where cgroups cannot be had).
type Started = (Vec<u32>, Vec<u32>, Vec<u32>);

/// Two pools on one shared server, each with a task that started a daemon; what the
/// template and the workers have as children.
fn two_pools_with_daemons(server: &ForkServer) -> Option<(Vec<Pool>, Started)> {
    let pools: Vec<Pool> = (0..2).map(|_| Pool::builder().processes(1).fork_server(server).build().unwrap()).collect();
    if pools[0].stats().containment != Containment::Cgroup {
        eprintln!("no writable cgroup v2 here: the workers are contained by {}", pools[0].stats().containment);
        return None;
    }
    let guards = children_of(server.pid().expect("a template runs"));
    assert_eq!(guards.len(), 1, "the template has one child, the guard of every pool's workers' cgroups");
    let escapers: Vec<u32> = pools.iter().map(|p| p.apply(escape, "daemon".to_string()).unwrap()).collect();
    // A worker with a guard of its own would have it as a child.
    let workers: Vec<u32> = pools.iter().flat_map(|p| p.stats().worker_pids).collect();
    let guards_of_workers = workers.into_iter().flat_map(children_of).collect();
    Some((pools, (escapers, guards, guards_of_workers)))
}

/// The owner: sends what it started, then waits to be SIGKILLed.
fn owner(conn: Connection<Started>) {
    let server = ForkServer::start().unwrap();
    let Some((_pools, started)) = two_pools_with_daemons(&server) else {
        return conn.send((Vec::new(), Vec::new(), Vec::new())).unwrap();
    };
    conn.send(started).unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn an_owner_sigkilled_leaves_no_process_and_no_cgroup() {
    let Some(base) = own_cgroup_dir() else { return };
    let (ours, theirs) = multiproc::Pipe::simplex::<Started>().unwrap();
    let mut p = Process::new(owner, theirs).contain(multiproc::Contain::Off);
    p.start().unwrap();
    let owner_pid = p.pid().unwrap();
    let (escapers, guards, guards_of_workers) = ours.recv().unwrap();
    assert_eq!(guards_of_workers, Vec::<u32>::new(), "workers in the server's subtree start no guard of their own");
    p.kill().unwrap();
    p.join().unwrap();
    for pid in escapers {
        wait_gone(pid, "a daemon started by a shared fork server's worker, its owner SIGKILLed");
    }
    // The guard removes every cgroup, those made ahead and never used too, before it ends.
    for pid in guards {
        wait_gone(pid, "the guard of a killed owner's shared fork server");
    }
    assert_eq!(cgroups_of(&base, owner_pid), Vec::<String>::new(), "cgroups left by the killed owner");
}

/// In its own process (so that the cgroups it finds are its own): the pools, then the
/// server, dropped; sends the cgroups left and the guard's pid.
fn drop_all(conn: Connection<(Vec<String>, Vec<u32>)>) {
    let base = own_cgroup_dir().unwrap();
    let server = ForkServer::start().unwrap();
    let Some((pools, (escapers, guards, _))) = two_pools_with_daemons(&server) else {
        return conn.send((Vec::new(), Vec::new())).unwrap();
    };
    drop(pools);
    for pid in escapers {
        wait_gone(pid, "a daemon of a dropped pool of a shared fork server");
    }
    // The subtree stays while the server does: the cgroups kept for the next pool.
    assert!(!cgroups_of(&base, std::process::id()).is_empty(), "the server's subtree went with its pools");
    drop(server);
    conn.send((cgroups_of(&base, std::process::id()), guards)).unwrap();
}

#[test]
fn a_server_dropped_after_its_pools_removes_its_subtree_and_ends_its_guard() {
    let Some(base) = own_cgroup_dir() else { return };
    let (ours, theirs) = multiproc::Pipe::simplex::<(Vec<String>, Vec<u32>)>().unwrap();
    let mut p = Process::new(drop_all, theirs).contain(multiproc::Contain::Off);
    p.start().unwrap();
    let (left, guards) = ours.recv().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(left, Vec::<String>::new(), "cgroups left by a dropped server under {}", base.display());
    for pid in guards {
        wait_gone(pid, "the guard of a dropped shared fork server");
    }
}
