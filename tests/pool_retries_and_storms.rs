//! Retries re-run a task whose worker died; an initializer that fails does not make
//! the pool respawn forever.

use multiproc::{Pool, PoolError, TaskError, TaskOptions};

multiproc::test_init!();

fn kill_me() -> ! {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    std::thread::sleep(std::time::Duration::from_secs(60));
    unreachable!()
}

/// Dies the first time it runs for `marker` (a file path), succeeds afterwards.
fn dies_once(marker: String) -> u32 {
    if std::fs::metadata(&marker).is_err() {
        std::fs::write(&marker, b"x").unwrap();
        kill_me();
    }
    std::process::id()
}

fn always_dies(_: u8) -> u8 {
    kill_me()
}

fn ok(x: u8) -> u8 {
    x
}

fn bad_init(_: ()) {
    panic!("no database today");
}

fn crashing_init(_: ()) {
    std::process::abort();
}

/// Fails in every worker started after the first two.
fn late_bad_init(_: ()) {
    let name = multiproc::current_process().name().to_string();
    if name != "PoolWorker-1" && name != "PoolWorker-2" {
        panic!("{name} cannot start");
    }
}

fn marker(tag: &str) -> String {
    let dir = std::env::temp_dir();
    let p = dir.join(format!("multiproc-retry-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p.to_string_lossy().into_owned()
}

#[test]
fn a_retry_reruns_the_task_on_a_fresh_worker() {
    let pool = Pool::new(1).unwrap();
    let m = marker("once");
    let r = pool.apply_async_with(dies_once, m.clone(), TaskOptions::new().retries(1));
    assert!(r.get().unwrap() > 0);
    let _ = std::fs::remove_file(&m);
    let s = pool.stats();
    assert_eq!(s.tasks_retried, 1, "{s:?}");
    assert_eq!(s.workers_died, 1, "{s:?}");
}

#[test]
fn a_task_that_kills_every_worker_stops_after_its_retries_listing_each_attempt() {
    let pool = Pool::builder().processes(2).retries(2).build().unwrap();
    match pool.apply(always_dies, 0) {
        Err(e @ TaskError::WorkerDied { .. }) => {
            let TaskError::WorkerDied { attempts, .. } = &e else { unreachable!() };
            assert_eq!(attempts.len(), 3, "{e}");
            assert!(attempts.iter().all(|a| a.signal == Some(9)));
            let mut pids: Vec<u32> = attempts.iter().map(|a| a.pid).collect();
            pids.dedup();
            assert_eq!(pids.len(), 3, "each attempt on a fresh worker");
            assert!(e.to_string().contains("after 3 attempts"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(ok, 5).unwrap(), 5);
}

#[test]
fn an_initializer_that_panics_fails_build() {
    match Pool::builder().processes(2).initializer(bad_init, ()).build() {
        Err(PoolError::Initializer { reason, worker, .. }) => {
            assert!(reason.contains("no database today"), "{reason}");
            assert!(worker.starts_with("PoolWorker-"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_initializer_that_starts_failing_later_breaks_the_pool_instead_of_looping() {
    let pool = Pool::builder().processes(2).initializer(late_bad_init, ()).build().unwrap();
    assert_eq!(pool.apply(ok, 1).unwrap(), 1);
    // Kill both healthy workers: every replacement's initializer fails.
    let a = pool.apply_async(always_dies, 0);
    let b = pool.apply_async(always_dies, 0);
    assert!(matches!(a.get(), Err(TaskError::WorkerDied { .. })));
    assert!(matches!(b.get(), Err(TaskError::WorkerDied { .. })));
    match pool.apply(ok, 2) {
        Err(TaskError::PoolBroken { reason, .. }) => assert!(reason.contains("cannot start"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let s = pool.stats();
    // Three failures in a row break the pool; starts already under way when that
    // happens (at most a spawn and an initializer per worker slot) may still fail, but
    // nothing is started after: bounded, not a storm.
    assert!(s.initializer_failures >= 3 && s.initializer_failures <= 3 + 2 * 2, "{s:?}");
    assert!(matches!(pool.apply(ok, 3), Err(TaskError::PoolBroken { .. })));
}

#[test]
fn an_initializer_that_crashes_fails_build_naming_the_signal() {
    match Pool::builder().processes(2).initializer(crashing_init, ()).build() {
        Err(e @ PoolError::Initializer { .. }) => {
            let PoolError::Initializer { reason, initializer, .. } = &e else { unreachable!() };
            assert!(reason.contains("SIGABRT"), "{e}");
            assert!(initializer.contains("crashing_init"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}
