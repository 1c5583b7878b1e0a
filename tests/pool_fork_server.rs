//! A pool whose workers are forked from a fork-server template (`StartMethod::ForkServer`):
//! they run tasks, see what the preload loaded, replacements after crashes come from the
//! template, a template killed mid-run loses nothing (it is started again), containment
//! applies to forked workers, they get the program's name and environment (not the
//! template's), and nothing is left behind (pool dropped, owner SIGKILLed).

use std::sync::OnceLock;
use std::time::Duration;

use multiproc::{Connection, Contain, Lock, LockError, Pool, PoolError, StartMethod, TaskError};

mod contain_common;
use contain_common::{alive, escape, nothing_outlives_a_killed_owner, wait_gone};

multiproc::test_init!();

/// 16 MiB, built once in the template by the preload.
static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
const TABLE_LEN: usize = 2 << 20;

fn load_table() {
    TABLE.get_or_init(|| (0..TABLE_LEN as u64).map(|i| i.wrapping_mul(2_654_435_761)).collect());
}

/// The table's entry `i` if this worker has the table (0 without it).
fn lookup(i: usize) -> u64 {
    TABLE.get().map_or(0, |t| t[i])
}

fn expected(i: usize) -> u64 {
    (i as u64).wrapping_mul(2_654_435_761)
}

/// This worker's pid and its parent's.
fn pids(_: ()) -> (u32, u32) {
    (std::process::id(), rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32))
}

fn kill_self(_: ()) {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    std::thread::sleep(Duration::from_secs(30));
}

fn slow_lookup(i: usize) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    lookup(i)
}

fn fork_server_pool(processes: usize) -> Pool {
    Pool::builder().processes(processes).start_method(StartMethod::ForkServer).preload(load_table).build().unwrap()
}

#[test]
fn forked_workers_run_tasks_and_see_the_preload() {
    let pool = fork_server_pool(2);
    let stats = pool.stats();
    let template = stats.fork_server_pid.expect("a fork server runs");
    assert_eq!(stats.fork_servers_started, 1);
    let got = pool.map(lookup, [0, 1, 12345, TABLE_LEN - 1]).unwrap();
    assert_eq!(got, [expected(0), expected(1), expected(12345), expected(TABLE_LEN - 1)]);
    // A worker is this process's child (the template forks it as its sibling).
    let (worker, parent) = pool.apply(pids, ()).unwrap();
    assert_eq!(parent, std::process::id());
    assert_ne!(worker, template);
    // The parent never loaded the table.
    assert!(TABLE.get().is_none());
}

#[test]
fn replacements_after_crashes_come_from_the_template() {
    let pool = fork_server_pool(2);
    for _ in 0..6 {
        let err = pool.apply(kill_self, ()).unwrap_err();
        assert!(matches!(err, TaskError::WorkerDied { .. }), "{err}");
    }
    // The replacements have the table: they were forked, not exec'd (the preload runs
    // only in the template).
    let got = pool.map(lookup, 0..64usize).unwrap();
    assert!(got.iter().enumerate().all(|(i, v)| *v == expected(i)), "a replacement lacks the preload");
    let stats = pool.stats();
    // Two first workers and six replacements (the last may still be starting).
    assert!(stats.workers_started >= 7, "{stats:?}");
    assert_eq!(stats.fork_servers_started, 1, "the template was never replaced");
}

#[test]
fn killing_the_template_mid_run_loses_nothing() {
    // One worker: after it dies, every item left needs its replacement.
    let pool = fork_server_pool(1);
    let first = pool.stats().fork_server_pid.unwrap();
    let run = pool.map_async(slow_lookup, 0..400usize);
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(first as i32).unwrap(),
        rustix::process::Signal::KILL,
    );
    wait_gone(first, "the killed template");
    // A worker that dies now is replaced by a fork of a new template.
    let killed = pool.apply_async(kill_self, ());
    let got = run.get().unwrap();
    assert!(got.iter().enumerate().all(|(i, v)| *v == expected(i)), "an item was lost or wrong");
    assert!(matches!(killed.get(), Err(TaskError::WorkerDied { .. })));
    let got = pool.map(lookup, 0..8usize).unwrap();
    assert!(got.iter().enumerate().all(|(i, v)| *v == expected(i)));
    let stats = pool.stats();
    assert_eq!(stats.fork_servers_started, 2, "{stats:?}");
    let second = stats.fork_server_pid.unwrap();
    assert_ne!(second, first);
}

#[test]
fn nothing_is_left_behind_when_the_pool_is_dropped() {
    let pool = fork_server_pool(2);
    assert_eq!(pool.apply(lookup, 3).unwrap(), expected(3));
    assert!(pool.apply(kill_self, ()).is_err());
    assert_eq!(pool.apply(lookup, 4).unwrap(), expected(4));
    let stats = pool.stats();
    let mut pids = stats.worker_pids.clone();
    pids.push(stats.fork_server_pid.unwrap());
    drop(pool);
    for pid in pids {
        assert!(!alive(pid), "{pid} outlived its pool");
    }
}

#[test]
fn forked_workers_are_contained() {
    for contain in [Contain::Auto, Contain::ProcessTree] {
        let pool = Pool::builder().processes(1).start_method(StartMethod::ForkServer).contain(contain).build().unwrap();
        assert_ne!(pool.stats().containment, multiproc::Containment::Off);
        let pid = pool.apply(escape, "double_fork".to_string()).unwrap();
        pool.close();
        pool.join().unwrap();
        wait_gone(pid, &format!("a forked worker's escaper ({contain:?})"));
    }
}

/// In a child: a fork-server pool, its pids sent over `conn`, then death by SIGKILL.
fn own_a_fork_server_pool_then_die(conn: Connection<Vec<u32>>) {
    let pool = fork_server_pool(2);
    pool.map(lookup, 0..4usize).unwrap();
    let stats = pool.stats();
    let mut pids = stats.worker_pids.clone();
    pids.push(stats.fork_server_pid.unwrap());
    pids.push(pool.apply(escape, "double_fork".to_string()).unwrap());
    conn.send(pids).unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn nothing_outlives_an_owner_that_is_sigkilled() {
    nothing_outlives_a_killed_owner(
        own_a_fork_server_pool_then_die,
        "a process of a SIGKILLed owner's fork-server pool",
    );
}

fn bad_preload() {
    panic!("no table today");
}

#[test]
fn a_preload_that_panics_fails_the_build_and_a_preload_needs_the_fork_server() {
    let err = Pool::builder().start_method(StartMethod::ForkServer).preload(bad_preload).build().unwrap_err();
    assert!(err.to_string().contains("no table today"), "{err}");
    let err = Pool::builder().start_method(StartMethod::Exec).preload(load_table).build().unwrap_err();
    assert!(matches!(err, PoolError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("ForkServer"), "{err}");
}

fn lock_and_die(lock: Lock) {
    let _guard = lock.acquire().unwrap();
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    std::thread::sleep(Duration::from_secs(30));
}

fn lock_and_return(lock: Lock) -> bool {
    lock.acquire_timeout(Duration::from_secs(60)).is_ok()
}

/// A forked worker is a full process of its own to the C library and the kernel: a lock
/// it dies holding is recovered (its thread id and robust-mutex list were set up as a
/// `fork` sets them up), and a lock it takes and releases works.
#[test]
fn a_lock_a_forked_worker_dies_holding_is_recovered() {
    let pool = fork_server_pool(1);
    let lock = Lock::new().unwrap();
    assert!(pool.apply(lock_and_return, lock.clone()).unwrap());
    assert!(pool.apply(lock_and_die, lock.clone()).is_err());
    match lock.acquire_timeout(Duration::from_secs(60)) {
        Err(LockError::OwnerDied(g)) => drop(g),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(pool.apply(lock_and_return, lock).unwrap());
}

/// The environment's glibc tunables and the process's name, as a task sees them.
fn tunables_and_name(_: ()) -> (Option<String>, String) {
    let name = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    (std::env::var("GLIBC_TUNABLES").ok(), name)
}

#[test]
fn forked_workers_have_the_programs_name_and_environment() {
    // The template runs with a tunable of its own (huge pages for the preload) and names
    // itself for `ps`: neither may reach the workers, nor what they start.
    let pool = fork_server_pool(2);
    let mine = tunables_and_name(());
    for got in pool.map(tunables_and_name, vec![(); 4]).unwrap() {
        assert_eq!(got, mine);
    }
    let template = pool.stats().fork_server_pid.unwrap();
    let name = std::fs::read_to_string(format!("/proc/{template}/comm")).unwrap();
    assert_eq!(name.trim(), "multiproc-forks");
}
