//! A worker SIGKILLed in the middle of a task, with more of a map waiting in its hands:
//! the broker hands its unacked tasks to another worker, and the caller of the cluster
//! pool gets every outcome exactly once — the task's result from the survivor, the map
//! whole and in order.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use multiproc::TaskOptions;
use multiproc_nats::ClusterPool;
use multiproc_nats::testing::NatsServer;

mod common;

multiproc_nats::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

/// Short, so the dead worker's tasks come back quickly.
const ACK_WAIT: Duration = Duration::from_secs(1);

#[test]
fn a_killed_workers_tasks_finish_elsewhere_once_for_the_caller() {
    let Some(server) = NatsServer::start("pool-worker-killed") else { return };
    let rendezvous = common::Rendezvous::new("pool-killed");
    let first = common::start_worker(&server, "pkilled", 1, ACK_WAIT);
    let pool = common::cluster_pool(&server, "pkilled", ACK_WAIT, 2);

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let held = pool.apply_async_with(
        common::report_and_wait,
        rendezvous.path.display().to_string(),
        TaskOptions::new().callback(move |_: &u32| {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let (_conn, who) = rendezvous.accept();
    assert_eq!(who, first.pid().to_string(), "the first worker runs the task");
    // A map behind it: the busy worker holds part of it, waiting in its local pool.
    let map = pool.map_async(square, 0..500u64);

    first.kill();
    let second = common::start_worker(&server, "pkilled", 2, ACK_WAIT);
    let (mut conn, who) = rendezvous.accept();
    assert_eq!(who, second.pid().to_string(), "the task came back, to the second worker");
    conn.write_all(b"g").unwrap();

    assert_eq!(held.get().unwrap(), second.pid());
    assert_eq!(map.get().unwrap(), (0..500u64).map(|i| i * i).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the callback ran once");
    let stats = pool.stats();
    assert_eq!((stats.tasks_done, stats.tasks_failed()), (501, 0), "each item counted once: {stats:?}");
    let client = ClusterPool::client_stats(&pool).unwrap();
    assert_eq!(client.submitted, client.finished, "{client:?}");
}
