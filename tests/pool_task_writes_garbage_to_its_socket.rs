//! A task that writes garbage into its worker's socket, then returns: the driver reads a
//! frame that makes no sense, kills the worker, and charges that task alone; every other
//! item settles with its value and nothing is left behind.

use multiproc::{Pool, TaskError};

mod common;
use common::assert_gone;
mod own_sockets;
use own_sockets::each_own_socket;

multiproc::test_init!();

const BAD: u64 = 5;

/// Item `BAD` writes bytes no frame starts with into every socket of its worker.
fn scribble(x: u64) -> u64 {
    if x == BAD {
        each_own_socket(|dup| {
            let _ = rustix::io::write(&dup, &[0xff; 64]);
        });
    }
    x * 10
}

#[test]
fn the_scribbling_item_alone_fails_and_the_pool_goes_on() {
    let pool = Pool::new(2).unwrap();
    for _ in 0..3 {
        let results = pool.map_results(scribble, 0..12u64);
        for (i, r) in results.iter().enumerate() {
            if i as u64 == BAD {
                assert!(matches!(r, Err(TaskError::WorkerDied { .. })), "item {i}: {r:?}");
            } else {
                assert_eq!(r.as_ref().ok(), Some(&(i as u64 * 10)), "item {i}: {r:?}");
            }
        }
    }
    assert_eq!(pool.apply(scribble, 1).unwrap(), 10);
    let mut pids = pool.stats().worker_pids;
    pool.close();
    pool.join().unwrap();
    pids.extend(pool.stats().worker_pids);
    assert_gone(&pids);
}
