//! W9 of the benchmark workloads as a test: 2 workers, 20 tasks; task `i` sleeps 50 ms
//! and returns `2i`, but task 5 first sends itself SIGKILL. Python's `Pool.map` hangs
//! here; we get 19 results, task 5's error names SIGKILL, the pool still works, and
//! nothing is left behind.

use std::time::Duration;

use multiproc::{Pool, TaskError};

mod common;
use common::assert_gone;

multiproc::test_init!();

fn w9(i: u64) -> u64 {
    if i == 5 {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
    std::thread::sleep(Duration::from_millis(50));
    2 * i
}

fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn w9_costs_one_task_and_leaves_nothing() {
    let pool = Pool::new(2).unwrap();
    let mut pids = pool.stats().worker_pids;
    let results = pool.map_results(w9, 0..20);
    let ok: Vec<u64> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    assert_eq!(ok.len(), 19);
    assert_eq!(ok, (0..20).filter(|&i| i != 5).map(|i| 2 * i).collect::<Vec<_>>());
    let e = results[5].as_ref().unwrap_err();
    assert!(matches!(e, TaskError::WorkerDied { signal: Some(9), .. }), "{e:?}");
    assert!(e.to_string().contains("SIGKILL"), "{e}");
    assert!(e.to_string().contains("w9"), "{e}");
    assert_eq!(pool.apply(double, 21).unwrap(), 42);
    if let TaskError::WorkerDied { pid, .. } = e {
        pids.push(*pid);
    }
    pids.extend(pool.stats().worker_pids);
    pool.close();
    pool.join().unwrap();
    assert_gone(&pids);
}
