//! With cgroup containment, a pool's `join` returns only once every worker's cgroup is
//! gone: removed empty, or killed and removed when a task left a process in it. Nothing
//! is left to a guard or to later, so an owner SIGKILLed right after `join` leaks no
//! cgroup directory and no process; workers SIGKILLed during the shutdown change nothing. And a `Process` child that returns and is never
//! joined still has what it started killed (its guard does it when the owner does not).
//!
//! Skipped (with a note) on a machine where no cgroup can be written: the process-tree
//! fallback has no directory to leave.

use std::path::PathBuf;

use multiproc::{Connection, Contain, Containment, Pool, Process, StartMethod};

mod contain_common;
use contain_common::*;

multiproc::test_init!();

/// This process's cgroup v2 directory (where a pool's worker cgroups are made), if the
/// hierarchy is mounted.
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

/// The worker cgroups of process `pid` still present under `base`.
fn cgroups_of(base: &std::path::Path, pid: u32) -> Vec<String> {
    let prefix = format!("multiproc-{pid}-");
    let Ok(dir) = std::fs::read_dir(base) else { return Vec::new() };
    dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(&prefix)).collect()
}

/// A 2-worker pool contained by a cgroup (`method`: how its workers start), or `None`
/// where cgroups cannot be had.
fn cgroup_pool(method: StartMethod) -> Option<Pool> {
    let pool = Pool::builder().processes(2).start_method(method).contain(Contain::Auto).build().unwrap();
    if pool.stats().containment != Containment::Cgroup {
        eprintln!("no writable cgroup v2 here: the workers are contained by {}", pool.stats().containment);
        return None;
    }
    Some(pool)
}

fn double(x: u64) -> u64 {
    2 * x
}

/// What a scenario left when its `join` returned: cgroups of its process, and processes
/// still running among those it names.
type Left = (Vec<String>, Vec<u32>);

/// Runs `scenario` in a child of its own (so that the cgroups it finds are its pools'
/// alone, not those of the tests running beside it) and returns what it left.
fn in_own_process(scenario: fn(Connection<Left>)) -> Left {
    let (ours, theirs) = multiproc::Pipe::simplex::<Left>().unwrap();
    let mut p = Process::new(scenario, theirs).contain(Contain::Off);
    p.start().unwrap();
    let left = ours.recv().unwrap();
    p.join().unwrap();
    left
}

/// One worker leaves a process behind (its cgroup must be killed), the other does not;
/// then `close` and `join`.
fn join_with_escaper(method: StartMethod, conn: Connection<Left>) {
    let (Some(base), Some(pool)) = (own_cgroup_dir(), cgroup_pool(method)) else {
        return conn.send((Vec::new(), Vec::new())).unwrap();
    };
    let escaper = pool.apply(escape, "daemon".to_string()).unwrap();
    assert_eq!(pool.apply(double, 21).unwrap(), 42);
    assert!(!cgroups_of(&base, std::process::id()).is_empty(), "the workers' cgroups are under {}", base.display());
    pool.close();
    pool.join().unwrap();
    let running = [escaper].into_iter().filter(|p| alive(*p)).collect();
    conn.send((cgroups_of(&base, std::process::id()), running)).unwrap();
}

fn join_with_escaper_exec(conn: Connection<Left>) {
    join_with_escaper(StartMethod::Exec, conn)
}

fn join_with_escaper_forked(conn: Connection<Left>) {
    join_with_escaper(StartMethod::ForkServer, conn)
}

#[test]
fn join_removes_every_worker_cgroup() {
    assert_eq!(in_own_process(join_with_escaper_exec), (vec![], vec![]), "left after join");
}

#[test]
fn join_removes_every_forked_worker_cgroup() {
    assert_eq!(in_own_process(join_with_escaper_forked), (vec![], vec![]), "left after join");
}

/// Pools closed at once, while their second worker most likely still starts.
fn close_while_starting(conn: Connection<Left>) {
    let mut left = Vec::new();
    if let Some(base) = own_cgroup_dir() {
        for _ in 0..5 {
            let Some(pool) = cgroup_pool(StartMethod::Exec) else { break };
            pool.close();
            pool.join().unwrap();
            left.extend(cgroups_of(&base, std::process::id()));
        }
    }
    conn.send((left, Vec::new())).unwrap();
}

#[test]
fn a_pool_closed_while_its_workers_start_leaves_no_cgroup() {
    assert_eq!(in_own_process(close_while_starting), (vec![], vec![]), "left after join");
}

/// Pools whose workers are SIGKILLed between `close` and `join` (before, while or after
/// they take their STOP, whichever the timing gives).
fn workers_killed_mid_shutdown(conn: Connection<Left>) {
    let mut left = Vec::new();
    let mut running = Vec::new();
    if let Some(base) = own_cgroup_dir() {
        for _ in 0..5 {
            let Some(pool) = cgroup_pool(StartMethod::Exec) else { break };
            assert_eq!(pool.map(double, 0..4u64).unwrap(), vec![0, 2, 4, 6]);
            let pids = pool.stats().worker_pids;
            pool.close();
            for &pid in &pids {
                rustix::process::kill_process(
                    rustix::process::Pid::from_raw(pid as i32).unwrap(),
                    rustix::process::Signal::KILL,
                )
                .ok();
            }
            pool.join().unwrap();
            left.extend(cgroups_of(&base, std::process::id()));
            running.extend(pids.into_iter().filter(|p| alive(*p)));
        }
    }
    conn.send((left, running)).unwrap();
}

#[test]
fn workers_killed_during_shutdown_leave_no_cgroup() {
    assert_eq!(in_own_process(workers_killed_mid_shutdown), (vec![], vec![]), "left after join");
}

/// In a child: a pool whose task started an escaper, closed and joined; then the pids
/// and the owner's cgroup count, and death by SIGKILL.
fn join_then_die(conn: Connection<(Vec<u32>, usize)>) {
    let Some(base) = own_cgroup_dir() else { return conn.send((Vec::new(), 0)).unwrap() };
    let Some(pool) = cgroup_pool(StartMethod::Exec) else { return conn.send((Vec::new(), 0)).unwrap() };
    let mut pids = pool.stats().worker_pids;
    pids.push(pool.apply(escape, "setsid".to_string()).unwrap());
    pool.close();
    pool.join().unwrap();
    conn.send((pids, cgroups_of(&base, std::process::id()).len())).unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn an_owner_killed_right_after_join_leaks_nothing() {
    let Some(base) = own_cgroup_dir() else { return };
    let (ours, theirs) = multiproc::Pipe::simplex::<(Vec<u32>, usize)>().unwrap();
    let mut owner = Process::new(join_then_die, theirs).contain(Contain::Off);
    owner.start().unwrap();
    let owner_pid = owner.pid().unwrap();
    let (pids, left_at_join) = ours.recv().unwrap();
    owner.kill().unwrap();
    owner.join().unwrap();
    assert_eq!(left_at_join, 0, "cgroups left when join returned");
    for pid in pids {
        wait_gone(pid, "a process of a pool whose owner was killed right after join");
    }
    assert_eq!(cgroups_of(&base, owner_pid), Vec::<String>::new(), "cgroups left by the killed owner");
}

/// A `Process` target: starts an escaper, sends its pid, returns.
fn escape_then_return((conn, way): (Connection<u32>, String)) {
    conn.send(escape(way)).unwrap();
}

#[test]
fn a_process_child_never_joined_still_has_its_escaper_killed() {
    let (ours, theirs) = multiproc::Pipe::simplex::<u32>().unwrap();
    let mut p = Process::new(escape_then_return, (theirs, "daemon".to_string())).contain(Contain::Auto);
    p.start().unwrap();
    let pid = ours.recv().unwrap();
    // The handle is kept and never joined: the owner, alive, does not clean up; the
    // child's guard does once the child has ended.
    wait_gone(pid, "the escaper of a Process never joined");
    p.join().unwrap();
}
