//! Whether a task killed for its timeout is retried (finding 8 of the accounting issue:
//! it never was, even with `retries`). The default stays "a timeout is final"; the pool's
//! `retry_timeouts(true)` makes a timeout count as a retriable failure.

use std::path::PathBuf;
use std::time::Duration;

use multiproc::{Pool, TaskError};

multiproc::test_init!();

/// Hangs the first time it runs for `marker` (creating the file), returns at once after.
fn hang_once(marker: PathBuf) -> u32 {
    if std::fs::OpenOptions::new().write(true).create_new(true).open(&marker).is_ok() {
        std::thread::sleep(Duration::from_secs(3600));
    }
    7
}

fn marker(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("multiproc-timeout-retries-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

// The timeout only has to be longer than `hang_once` takes to return when it does not
// hang; what is asserted is the outcome, not a duration.
const TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn by_default_a_timeout_is_final_even_with_retries() {
    let pool = Pool::builder().processes(1).timeout(TIMEOUT).retries(3).build().unwrap();
    match pool.apply(hang_once, marker("final")) {
        Err(TaskError::Timeout { .. }) => {}
        other => panic!("{other:?}"),
    }
    let stats = pool.stats();
    assert_eq!((stats.tasks_timed_out, stats.tasks_retried), (1, 0), "{stats:?}");
}

#[test]
fn with_retry_timeouts_the_task_runs_again() {
    let pool = Pool::builder().processes(2).timeout(TIMEOUT).retries(1).retry_timeouts(true).build().unwrap();
    let path = marker("retried");
    let shared = marker("shared");
    let others: Vec<_> = (0..10).map(|_| pool.apply_async(hang_once, shared.clone())).collect();
    assert_eq!(pool.apply_async(hang_once, path).get().unwrap(), 7);
    for h in others {
        assert_eq!(h.get().unwrap(), 7);
    }
    let stats = pool.stats();
    assert!(stats.tasks_retried >= 1 && stats.tasks_timed_out == stats.tasks_retried, "{stats:?}");
}

#[test]
fn with_retry_timeouts_the_retries_are_bounded() {
    fn always_hangs(_: ()) -> u32 {
        std::thread::sleep(Duration::from_secs(3600));
        0
    }
    let pool = Pool::builder().processes(1).timeout(TIMEOUT).retries(2).retry_timeouts(true).build().unwrap();
    match pool.apply(always_hangs, ()) {
        Err(TaskError::Timeout { .. }) => {}
        other => panic!("{other:?}"),
    }
    let stats = pool.stats();
    assert_eq!((stats.tasks_timed_out, stats.tasks_retried), (3, 2), "{stats:?}");
}
