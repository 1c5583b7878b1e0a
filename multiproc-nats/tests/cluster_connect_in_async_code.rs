//! A cluster pool used from async code: `ClusterPool::connect()` (and the queue status)
//! called inside a tokio runtime, where a blocking call that starts a runtime of its own
//! used to panic with "Cannot start a runtime from within a runtime"; then its tasks are
//! awaited on that runtime, and the pool is dropped there too.

use std::time::Duration;

use multiproc_nats::testing::NatsServer;

mod common;

multiproc_nats::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

const ACK_WAIT: Duration = Duration::from_secs(30);

#[test]
fn connect_status_and_await_inside_a_current_thread_runtime() {
    let Some(server) = NatsServer::start("in-async") else { return };
    let _worker = common::start_worker(&server, "ia", 2, ACK_WAIT);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let got = rt.block_on(async {
        let pool = common::cluster_pool(&server, "ia", ACK_WAIT, 2);
        let client = common::client(&server, "ia", ACK_WAIT);
        assert!(client.status().is_ok());
        let handles: Vec<_> = (0..4u64).map(|i| pool.apply_async(square, i)).collect();
        let mut got = Vec::new();
        for h in handles {
            got.push(h.await.unwrap());
        }
        drop(client);
        drop(pool);
        got
    });
    assert_eq!(got, [0, 1, 4, 9]);
}

#[test]
fn connect_inside_a_multi_thread_runtime() {
    let Some(server) = NatsServer::start("in-async-mt") else { return };
    let _worker = common::start_worker(&server, "im", 1, ACK_WAIT);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let v = rt.block_on(async {
        let pool = common::cluster_pool(&server, "im", ACK_WAIT, 1);
        pool.apply_async(square, 12).await.unwrap()
    });
    assert_eq!(v, 144);
}
