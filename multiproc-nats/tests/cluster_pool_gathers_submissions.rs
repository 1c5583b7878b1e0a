//! Single-item submissions made close together travel together: a burst of
//! `apply_async` is fewer broker messages than calls, every call still gets its own
//! outcome (a panic fails only its own call), a call cancelled while gathered gives
//! `Cancelled`; a callback run on the gathering thread may submit; with gathering off,
//! every call is one message.

use std::time::Duration;

use multiproc::{TaskError, TaskOptions};
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, ClientConfig, ClusterPool};

mod common;

multiproc_nats::test_init!();

fn picky(x: u64) -> u64 {
    assert!(x % 97 != 5, "no {x}");
    x * 2
}

fn bulk(v: Vec<u8>) -> usize {
    v.len()
}

fn pool(server: &NatsServer, gather: bool) -> multiproc::Pool {
    let config = ClientConfig::new(BrokerConfig::parse(&server.url()).unwrap())
        .queue(common::queue("gather", Duration::from_secs(10)));
    ClusterPool::with_client(config).processes(2).gather(gather).connect().expect("the cluster pool connects")
}

fn burst(pool: &multiproc::Pool, n: u64) {
    let handles: Vec<_> = (0..n).map(|i| pool.apply_async(picky, i)).collect();
    for (i, h) in (0..n).zip(handles) {
        match h.get() {
            Ok(v) => assert_eq!(v, i * 2),
            Err(TaskError::Panicked { message, .. }) => assert_eq!((message, i % 97), (format!("no {i}"), 5)),
            Err(e) => panic!("item {i}: {e}"),
        }
    }
}

#[test]
fn a_burst_of_apply_async_travels_in_few_messages() {
    let Some(server) = NatsServer::start("gather") else { return };
    let _workers = [
        common::start_worker(&server, "gather", 2, Duration::from_secs(10)),
        common::start_worker(&server, "gather", 2, Duration::from_secs(10)),
    ];
    let n = 3000;

    let gathered = pool(&server, true);
    burst(&gathered, n);
    let messages = ClusterPool::client_stats(&gathered).unwrap().submitted;
    assert!(messages < n, "{messages} messages for {n} calls");
    // One cancelled among others: it alone is cancelled, the others come back.
    let handles: Vec<_> = (0..50).map(|i| gathered.apply_async(picky, i)).collect();
    assert!(handles[10].cancel());
    for (i, h) in handles.into_iter().enumerate() {
        match h.get() {
            Err(TaskError::Cancelled { .. }) => assert_eq!(i, 10),
            other => assert!(i != 10 && (other.is_ok() || i == 5), "item {i}: {other:?}"),
        }
    }
    assert_eq!(gathered.stats().tasks_cancelled, 1);
    // A call that fails before it leaves (too large for the broker) has its callback run
    // on the gathering thread; a call the callback makes there still goes out.
    let shared = std::sync::Arc::new(gathered);
    let (tx, rx) = std::sync::mpsc::channel();
    let inner = shared.clone();
    let on_error = move |e: &TaskError| {
        tx.send((e.to_string(), inner.apply(picky, 21))).unwrap();
    };
    let big = shared.apply_async_with(bulk, vec![7u8; 2 << 20], TaskOptions::new().error_callback(on_error));
    assert!(matches!(big.get(), Err(TaskError::Remote { .. })));
    let (error, nested) = rx.recv().unwrap();
    assert!(error.contains("over the broker's limit"), "{error}");
    assert_eq!(nested.unwrap(), 42);
    let gathered = std::sync::Arc::into_inner(shared).unwrap();
    gathered.close();
    gathered.join().unwrap();

    let one_by_one = pool(&server, false);
    burst(&one_by_one, 200);
    assert_eq!(ClusterPool::client_stats(&one_by_one).unwrap().submitted, 200);
}
