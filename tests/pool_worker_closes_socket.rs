//! A task that shuts its worker's socket and then keeps running: the pool can hear
//! nothing more from that worker, so it kills it (after a short grace for an exit in
//! progress), fails exactly that task, and goes on with the rest.

use std::time::Duration;

use multiproc::{Pool, TaskError};

mod common;
use common::assert_gone;
mod own_sockets;
use own_sockets::each_own_socket;

multiproc::test_init!();

const BAD: u64 = 3;

/// Item `BAD` shuts down every socket of its worker process, then sleeps for an hour.
fn shut_sockets_then_hang(x: u64) -> u64 {
    if x == BAD {
        each_own_socket(|dup| {
            let _ = rustix::net::shutdown(dup, rustix::net::Shutdown::Both);
        });
        std::thread::sleep(Duration::from_secs(3600));
    }
    x * 10
}

fn check(results: Vec<Result<u64, TaskError>>) -> u32 {
    assert_eq!(results.len(), 8);
    let mut died = 0;
    for (i, r) in results.into_iter().enumerate() {
        if i as u64 == BAD {
            match r {
                Err(TaskError::WorkerDied { signal, pid, .. }) => {
                    assert_eq!(signal, Some(9), "the pool kills the worker");
                    died = pid;
                }
                other => panic!("item {BAD}: {other:?}"),
            }
        } else {
            assert_eq!(r.unwrap(), i as u64 * 10, "item {i}");
        }
    }
    died
}

fn run(api: &str) {
    let pool = Pool::new(2).unwrap();
    let mut pids = pool.stats().worker_pids;
    let results = match api {
        "apply_async" => {
            let hs: Vec<_> = (0..8).map(|i| pool.apply_async(shut_sockets_then_hang, i)).collect();
            hs.into_iter().map(|h| h.get()).collect()
        }
        "apply" => (0..8).map(|i| pool.apply(shut_sockets_then_hang, i)).collect(),
        "map" => pool.map_results(shut_sockets_then_hang, 0..8u64),
        _ => unreachable!(),
    };
    pids.push(check(results));
    assert_eq!(pool.apply(shut_sockets_then_hang, 5).unwrap(), 50, "the pool goes on after {api}");
    pids.extend(pool.stats().worker_pids);
    pool.close();
    pool.join().unwrap();
    assert_gone(&pids);
}

#[test]
fn apply_async_task_that_shuts_its_socket() {
    run("apply_async");
}

#[test]
fn apply_task_that_shuts_its_socket() {
    run("apply");
}

#[test]
fn map_item_that_shuts_its_socket() {
    run("map");
}
