//! One `ForkServer` shared by several pools: both pools' workers are forked from the same
//! template (they see its preload), one pool's end leaves the other working, a template
//! killed while shared is started again for both, the template goes with the last
//! handle or pool, pools built from several threads at once share it safely, a preload
//! that leaves a thread is refused when the server starts, settings
//! that contradict a shared server are refused by name, and nothing outlives an owner
//! that is SIGKILLed.

use std::sync::OnceLock;

use multiproc::{Connection, ForkServer, Pool, PoolError, StartMethod, TaskError};

mod contain_common;
use contain_common::{alive, escape, nothing_outlives_a_killed_owner, wait_gone};

multiproc::test_init!();

static TABLE: OnceLock<Vec<u64>> = OnceLock::new();

fn load_table() {
    TABLE.get_or_init(|| (0..4096u64).map(|i| i * 3 + 1).collect());
}

fn lookup(i: usize) -> u64 {
    TABLE.get().map_or(0, |t| t[i])
}

fn kill_self(_: ()) {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    loop {
        std::thread::park();
    }
}

fn pool_on(server: &ForkServer) -> Pool {
    Pool::builder().processes(2).fork_server(server).build().unwrap()
}

fn lookups_right(pool: &Pool) {
    let got = pool.map(lookup, 0..64usize).unwrap();
    assert!(got.iter().enumerate().all(|(i, v)| *v == i as u64 * 3 + 1), "a worker lacks the preload: {got:?}");
}

#[test]
fn two_pools_fork_from_one_template() {
    let server = ForkServer::with_preload(load_table).unwrap();
    let template = server.pid().unwrap();
    let (a, b) = (pool_on(&server), pool_on(&server));
    lookups_right(&a);
    lookups_right(&b);
    assert_eq!(a.stats().fork_server_pid, Some(template));
    assert_eq!(b.stats().fork_server_pid, Some(template));
    // The parent never loaded the table: only forks of the template have it.
    assert!(TABLE.get().is_none());
    // Crash replacements come from the shared template too.
    assert!(matches!(a.apply(kill_self, ()), Err(TaskError::WorkerDied { .. })));
    lookups_right(&a);
    // One pool's end does not end the template nor the other pool.
    a.close();
    a.join().unwrap();
    drop(a);
    assert!(alive(template));
    lookups_right(&b);
    assert_eq!(server.templates_started(), 1);
}

#[test]
fn a_template_killed_while_shared_is_started_again_for_every_pool() {
    let server = ForkServer::with_preload(load_table).unwrap();
    // One worker each: after it dies, the pool's next task needs its replacement.
    let one = || Pool::builder().processes(1).fork_server(&server).build().unwrap();
    let (a, b) = (one(), one());
    let first = server.pid().unwrap();
    rustix::process::kill_process(rustix::process::Pid::from_raw(first as i32).unwrap(), rustix::process::Signal::KILL)
        .unwrap();
    wait_gone(first, "the killed shared template");
    // Each pool loses its worker and needs a fork from a new template.
    assert!(a.apply(kill_self, ()).is_err());
    assert!(b.apply(kill_self, ()).is_err());
    lookups_right(&a);
    lookups_right(&b);
    assert_eq!(server.templates_started(), 2);
    assert_ne!(server.pid(), Some(first));
}

#[test]
fn the_template_goes_with_the_last_handle_or_pool() {
    let server = ForkServer::start().unwrap();
    let template = server.pid().unwrap();
    let pool = pool_on(&server);
    drop(server);
    // The pool keeps it.
    assert!(matches!(pool.apply(kill_self, ()), Err(TaskError::WorkerDied { .. })));
    assert_eq!(pool.apply(lookup, 5).unwrap(), 0);
    assert!(alive(template));
    let workers = pool.stats().worker_pids;
    drop(pool);
    assert!(!alive(template), "the template outlived its last pool");
    for pid in workers {
        assert!(!alive(pid), "worker {pid} outlived its pool");
    }
}

#[test]
fn settings_that_contradict_a_shared_server_are_refused_by_name() {
    let server = ForkServer::start().unwrap();
    let refused = |b: multiproc::PoolBuilder| match b.fork_server(&server).build() {
        Err(PoolError::Invalid(why)) => why,
        other => panic!("expected a refusal, got {:?}", other.map(|_| "a pool")),
    };
    let why = refused(Pool::builder().start_method(StartMethod::Exec));
    assert!(why.contains("StartMethod::Exec"), "{why}");
    let why = refused(Pool::builder().preload(load_table));
    assert!(why.contains("ForkServer::with_preload"), "{why}");
    let why = refused(Pool::builder().executable(std::env::current_exe().unwrap()));
    assert!(why.contains("executable"), "{why}");
    // The same server still serves a pool built right.
    assert_eq!(pool_on(&server).apply(lookup, 1).unwrap(), 0);
}

#[test]
fn a_preload_that_panics_fails_the_server() {
    fn bad() {
        panic!("no table today");
    }
    let err = ForkServer::with_preload(bad).unwrap_err();
    assert!(err.to_string().contains("no table today"), "{err}");
}

/// In a child: a shared server and two pools on it, the pids sent over `conn`, then
/// death by SIGKILL.
fn own_two_pools_then_die(conn: Connection<Vec<u32>>) {
    let server = ForkServer::with_preload(load_table).unwrap();
    let (a, b) = (pool_on(&server), pool_on(&server));
    let mut pids = vec![server.pid().unwrap()];
    for pool in [&a, &b] {
        pids.extend(pool.stats().worker_pids);
        pids.push(pool.apply(escape, "double_fork".to_string()).unwrap());
    }
    conn.send(pids).unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn nothing_outlives_an_owner_that_is_sigkilled() {
    nothing_outlives_a_killed_owner(
        own_two_pools_then_die,
        "a process of a SIGKILLed owner's shared fork server or its pools",
    );
}

#[test]
fn pools_built_from_several_threads_share_the_server_safely() {
    let server = ForkServer::with_preload(load_table).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || {
                let pool = pool_on(&server);
                lookups_right(&pool);
                assert!(pool.apply(kill_self, ()).is_err());
                lookups_right(&pool);
                pool.stats().fork_server_pid
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), server.pid());
    }
    assert_eq!(server.templates_started(), 1);
}

fn start_a_thread() {
    std::thread::spawn(|| {
        loop {
            std::thread::park();
        }
    });
}

#[test]
fn a_preload_that_leaves_a_thread_fails_the_server_or_the_pool_at_once() {
    // The template forks only while single-threaded: it says so when it starts, rather
    // than at each fork.
    let err = ForkServer::with_preload(start_a_thread).unwrap_err();
    assert!(err.to_string().contains("its preload left 1 running"), "{err}");
    let err = Pool::builder().start_method(StartMethod::ForkServer).preload(start_a_thread).build().unwrap_err();
    assert!(err.to_string().contains("its preload left 1 running"), "{err}");
}
