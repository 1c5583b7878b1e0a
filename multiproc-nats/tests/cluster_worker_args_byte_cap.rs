//! A worker's cap on the bytes of large arguments it holds at once
//! (`WorkerConfig::max_args_bytes`). Arguments over the broker's message limit (1 MiB)
//! travel through the object store, and a worker reads a task's whole before it runs it.
//! With two slots and a cap of 3 MiB:
//! - a second task of 2 MiB is not read while a first of 2 MiB runs: it waits (counted
//!   in the worker's stats), runs once the first is let go, and both come back whole;
//! - a task of 5 MiB, larger than the cap, still runs, alone: nothing is read beside it;
//! - without a cap, both tasks of 2 MiB run at once (what the cap changes).
//!
//! Tasks report in on a Unix socket and wait for the test's word, so "running" and
//! "not started" are facts the test observes, not timings.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use common::{PATIENCE, Rendezvous};
use multiproc::AsyncResult;
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, PoolRunner, WorkerConfig, WorkerHandle};

mod common;

multiproc_nats::test_init!();

const ACK_WAIT: Duration = Duration::from_secs(30);

/// The worker's cap in these tests.
const CAP: u64 = 3 << 20;

/// A task: says it runs and how many bytes it was given, waits for the test's word,
/// then returns the length and a checksum of what it was given.
fn hold((path, data): (String, Vec<u8>)) -> (usize, u64) {
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    writeln!(s, "{}", data.len()).unwrap();
    let mut go = [0u8; 1];
    let _ = s.read(&mut go);
    (data.len(), checksum(&data))
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// A worker in this process with two slots and the cap `cap`, and a cluster pool.
fn worker_and_pool(server: &NatsServer, pool: &str, cap: Option<u64>) -> (WorkerHandle, multiproc::Pool) {
    let mut config =
        WorkerConfig::new(BrokerConfig::parse(&server.url()).unwrap()).queue(common::queue(pool, ACK_WAIT));
    if let Some(cap) = cap {
        config = config.max_args_bytes(cap);
    }
    let worker = multiproc_nats::start_worker(config, Arc::new(PoolRunner::start(2).unwrap())).unwrap();
    (worker, common::cluster_pool(server, pool, ACK_WAIT, 2))
}

/// Submits a task holding `len` bytes (made from `seed`); returns it and what it must
/// give back.
fn submit(pool: &multiproc::Pool, at: &Rendezvous, seed: u64, len: usize) -> (AsyncResult<(usize, u64)>, (usize, u64)) {
    let data = common::pseudo_random_bytes(seed, len);
    let want = (len, checksum(&data));
    (pool.apply_async(hold, (at.path.to_string_lossy().into_owned(), data)), want)
}

/// Whether a task has reported in that the test has not accepted yet: it runs.
fn one_more_running(at: &Rendezvous) -> bool {
    let listener = at.try_clone_listener();
    // One open socket under both handles: blocking again before `accept` uses it.
    listener.set_nonblocking(true).unwrap();
    let accepted = listener.accept();
    listener.set_nonblocking(false).unwrap();
    match accepted {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

fn go(mut task: std::os::unix::net::UnixStream) {
    task.write_all(b"g").unwrap();
}

#[test]
fn a_second_large_argument_waits_for_room_and_both_come_back_whole() {
    let Some(server) = NatsServer::start("args-cap") else { return };
    let (worker, pool) = worker_and_pool(&server, "argscap", Some(CAP));
    let at = Rendezvous::new("args-cap");

    let (first, first_want) = submit(&pool, &at, 1, 2 << 20);
    let (running, said) = at.accept();
    assert_eq!(said, (2 << 20).to_string());
    let (second, second_want) = submit(&pool, &at, 2, 2 << 20);
    let stats = worker.wait_for(PATIENCE, |s| s.args_waited >= 1);
    assert!(stats.is_some(), "the second task waits for room: {:?}", worker.stats());
    assert!(!one_more_running(&at), "4 MiB of arguments were read under a cap of 3 MiB");

    go(running);
    let (running, said) = at.accept();
    assert_eq!(said, (2 << 20).to_string());
    go(running);
    assert_eq!(first.get_timeout(PATIENCE).unwrap(), first_want);
    assert_eq!(second.get_timeout(PATIENCE).unwrap(), second_want);
    assert_eq!(worker.stats().args_waited, 1);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn arguments_larger_than_the_cap_run_alone() {
    let Some(server) = NatsServer::start("args-cap-alone") else { return };
    let (worker, pool) = worker_and_pool(&server, "argscapalone", Some(CAP));
    let at = Rendezvous::new("args-cap-alone");

    let (small, small_want) = submit(&pool, &at, 3, 2 << 20);
    let (running, _) = at.accept();
    let (large, large_want) = submit(&pool, &at, 4, 5 << 20);
    assert!(worker.wait_for(PATIENCE, |s| s.args_waited >= 1).is_some(), "the 5 MiB task waits");
    go(running);

    let (running, said) = at.accept();
    assert_eq!(said, (5 << 20).to_string(), "larger than the cap, it runs all the same");
    let (after, after_want) = submit(&pool, &at, 5, 2 << 20);
    assert!(worker.wait_for(PATIENCE, |s| s.args_waited >= 2).is_some(), "nothing is read beside it");
    assert!(!one_more_running(&at));
    go(running);

    let (running, said) = at.accept();
    assert_eq!(said, (2 << 20).to_string());
    go(running);
    assert_eq!(small.get_timeout(PATIENCE).unwrap(), small_want);
    assert_eq!(large.get_timeout(PATIENCE).unwrap(), large_want);
    assert_eq!(after.get_timeout(PATIENCE).unwrap(), after_want);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn without_a_cap_both_large_arguments_are_read_at_once() {
    let Some(server) = NatsServer::start("args-no-cap") else { return };
    let (worker, pool) = worker_and_pool(&server, "argsnocap", None);
    let at = Rendezvous::new("args-no-cap");

    let (first, first_want) = submit(&pool, &at, 6, 2 << 20);
    let (second, second_want) = submit(&pool, &at, 7, 2 << 20);
    let (a, _) = at.accept();
    let (b, _) = at.accept();
    go(a);
    go(b);
    assert_eq!(first.get_timeout(PATIENCE).unwrap(), first_want);
    assert_eq!(second.get_timeout(PATIENCE).unwrap(), second_want);
    assert_eq!(worker.stats().args_waited, 0);
    pool.close();
    pool.join().unwrap();
}
