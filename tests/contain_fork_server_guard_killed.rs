//! A task kills the one guard of its fork server's subtree (tasks run as the owner's
//! user, and a task finds the guard as any process could: its parent is the owner, the
//! owner's child named `multiproc-forks` is the template, and the template's child named
//! `multiproc-guard` is the guard). The owner starts another guard at once, so that when
//! the owner is SIGKILLed later nothing is left: no process a task started, no cgroup.
//! Attacked: the guard killed and a worker forked after it, the guard killed while every
//! worker idles, the guard killed again and again, the template and the guard killed
//! together.
//!
//! Skipped (with a note) on a machine where no cgroup can be written.

use std::time::Instant;

use multiproc::{Connection, Contain, Containment, Pool, Process, StartMethod};

mod contain_common;
use contain_common::*;

multiproc::test_init!();

/// A process as `/proc/<pid>/stat` shows it.
struct Seen {
    pid: u32,
    parent: u32,
    name: String,
    zombie: bool,
}

/// Every process now, from `/proc`.
fn processes() -> Vec<Seen> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_string();
            let mut fields = rest.split_whitespace();
            let zombie = fields.next()? == "Z";
            let parent = fields.next()?.parse().ok()?;
            Some(Seen { pid, parent, name, zombie })
        })
        .collect()
}

/// The living child of `parent` named `name`, if any.
fn living_child(parent: u32, name: &str) -> Option<u32> {
    processes().into_iter().find(|p| p.parent == parent && p.name == name && !p.zombie).map(|p| p.pid)
}

/// The fork-server template of `owner` and the guard of its subtree, found as a task
/// could find them.
fn template_and_guard(owner: u32) -> Option<(u32, u32)> {
    let template = living_child(owner, "multiproc-forks")?;
    Some((template, living_child(template, "multiproc-guard")?))
}

fn sigkill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
}

/// The hostile task: SIGKILLs the guard of its own worker's subtree (and, with
/// `template_too`, the template just before it); returns the pids killed. The guard it
/// looks for may be one the owner is still starting (after an earlier round killed the
/// last), so it looks until one is there.
fn kill_guard(template_too: bool) -> Vec<u32> {
    let owner = rustix::process::getppid().unwrap().as_raw_nonzero().get() as u32;
    let deadline = Instant::now() + DEADLINE;
    let (template, guard) = loop {
        match template_and_guard(owner) {
            Some(found) => break found,
            None if Instant::now() > deadline => panic!("the task finds no guard of its fork server"),
            // Nothing can be waited on for a process another one starts: see `wait_for_a_new_guard`.
            None => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    };
    if template_too {
        sigkill(template);
    }
    sigkill(guard);
    if template_too { vec![template, guard] } else { vec![guard] }
}

/// The hostile task, persistent: SIGKILLs each new guard of its subtree as soon as it
/// sees it, `n` times; returns the pids killed.
fn kill_guards(n: usize) -> Vec<u32> {
    let owner = rustix::process::getppid().unwrap().as_raw_nonzero().get() as u32;
    let mut killed = Vec::new();
    for _ in 0..n {
        let guard = wait_for_a_new_guard(owner, &killed).expect("a new guard after each one killed");
        sigkill(guard);
        killed.push(guard);
    }
    killed
}

fn kill_own_worker(_: ()) {
    std::process::abort();
}

/// Waits until `owner`'s fork server has a living guard other than those in `killed`;
/// `None` if none came by the deadline. Nothing can be waited on for a process that
/// another one starts: `/proc` is looked at again and again, a little apart.
fn wait_for_a_new_guard(owner: u32, killed: &[u32]) -> Option<u32> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some((_, guard)) = template_and_guard(owner).filter(|(_, g)| !killed.contains(g)) {
            return Some(guard);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// What the owner sends: the escapers its tasks started, and the guard that watches its
/// subtree when it is SIGKILLed (none if the killed guard was never replaced).
type Started = (Vec<u32>, Option<u32>);

/// How the guard is killed.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
enum Attack {
    /// The guard is killed, then a worker is forked (its first task kills it).
    ThenFork,
    /// The guard is killed while the workers idle: no fork happens after it.
    WhileIdle,
    /// The guard is killed five times, a worker forked after each.
    AgainAndAgain,
    /// The template and the guard are killed together; no fork happens after it.
    WithTemplate,
    /// A task kills each new guard, twenty times, while another worker is replaced
    /// again and again.
    WhileForking,
}

/// The owner: a fork-server pool of one worker (two when attacked while forking), whose
/// first task leaves a daemon; the guard is attacked; once a guard watches the subtree
/// again (or the deadline passed), sends what was started and waits to be SIGKILLed.
fn owner((conn, attack): (Connection<Started>, Attack)) {
    let workers = if matches!(attack, Attack::WhileForking) { 2 } else { 1 };
    let pool = Pool::builder()
        .processes(workers)
        .start_method(StartMethod::ForkServer)
        .contain(Contain::Auto)
        .build()
        .unwrap();
    if pool.stats().containment != Containment::Cgroup {
        eprintln!("no writable cgroup v2 here: the workers are contained by {}", pool.stats().containment);
        return conn.send((Vec::new(), None)).unwrap();
    }
    let me = std::process::id();
    let mut escapers = vec![pool.apply(escape, "daemon".to_string()).unwrap()];
    let mut killed = Vec::new();
    if matches!(attack, Attack::WhileForking) {
        killed = kill_guards_while_forking(&pool);
        escapers.push(pool.apply(escape, "setsid".to_string()).unwrap());
    }
    let rounds = match attack {
        Attack::AgainAndAgain => 5,
        Attack::WhileForking => 0,
        _ => 1,
    };
    for _ in 0..rounds {
        let pids = pool.apply(kill_guard, matches!(attack, Attack::WithTemplate)).unwrap();
        for &pid in &pids {
            wait_gone(pid, "a guard (or template) a task SIGKILLed");
        }
        killed.extend(pids);
        if matches!(attack, Attack::ThenFork | Attack::AgainAndAgain) {
            // The worker ends: its replacement is forked into the subtree.
            pool.apply(kill_own_worker, ()).unwrap_err();
            escapers.push(pool.apply(escape, "setsid".to_string()).unwrap());
        }
    }
    let guard = wait_for_a_new_guard(me, &killed);
    conn.send((escapers, guard)).unwrap();
    loop {
        std::thread::park();
    }
}

/// Has a task kill each new guard twenty times while workers die and are forked again;
/// returns the guards killed.
fn kill_guards_while_forking(pool: &Pool) -> Vec<u32> {
    let hostile = pool.apply_async(kill_guards, 20);
    for _ in 0..10 {
        pool.apply(kill_own_worker, ()).unwrap_err();
    }
    hostile.get().unwrap()
}

/// Runs `owner` under `attack`, SIGKILLs it, and checks that nothing of it is left.
fn attacked(attack: Attack) {
    let Some(base) = own_cgroup_dir() else { return };
    let (ours, theirs) = multiproc::Pipe::simplex::<Started>().unwrap();
    let mut p = Process::new(owner, (theirs, attack)).contain(Contain::Off);
    p.start().unwrap();
    let owner_pid = p.pid().unwrap();
    let (escapers, guard) = ours.recv().unwrap();
    p.kill().unwrap();
    p.join().unwrap();
    for pid in escapers {
        wait_gone(pid, "a process a fork-server worker started, its guard killed before its owner");
    }
    let guard = guard.expect("a guard watched the subtree again before the owner was SIGKILLed");
    // The guard removes every cgroup before it ends.
    wait_gone(guard, "the guard that replaced the killed one");
    assert_eq!(cgroups_of(&base, owner_pid), Vec::<String>::new(), "cgroups left by the killed owner");
}

#[test]
fn a_guard_killed_then_a_worker_forked_then_the_owner_killed_leaves_nothing() {
    attacked(Attack::ThenFork);
}

#[test]
fn a_guard_killed_while_the_workers_idle_is_replaced_before_the_owner_dies() {
    attacked(Attack::WhileIdle);
}

#[test]
fn a_guard_killed_again_and_again_is_replaced_each_time() {
    attacked(Attack::AgainAndAgain);
}

#[test]
fn a_guard_killed_as_soon_as_it_starts_while_workers_are_forked_is_replaced_each_time() {
    attacked(Attack::WhileForking);
}

#[test]
fn a_template_and_its_guard_killed_together_are_replaced_before_the_owner_dies() {
    attacked(Attack::WithTemplate);
}
