//! Single-item submissions made close together travel together: a burst of
//! `apply_async` is fewer broker messages than calls, every call still gets its own
//! outcome (a panic fails only its own call), a call cancelled while gathered gives
//! `Cancelled`; a call too large for a message travels alone; with gathering off, every
//! call is one message.

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
    // A call too large for a broker message among gathered ones travels alone, through
    // the pool's object store, and comes back; its callback (on the client's thread)
    // hears it, and the others go on.
    let (tx, rx) = std::sync::mpsc::channel();
    let big = gathered.apply_async_with(
        bulk,
        vec![7u8; 2 << 20],
        TaskOptions::new().callback(move |n: &usize| tx.send(*n).unwrap()),
    );
    let small: Vec<_> = (6..26).map(|i| (i, gathered.apply_async(picky, i))).collect();
    assert_eq!(big.get().unwrap(), 2 << 20);
    assert_eq!(rx.recv().unwrap(), 2 << 20);
    assert!(small.into_iter().all(|(i, h)| h.get() == Ok(i * 2)));
    gathered.close();
    gathered.join().unwrap();

    let one_by_one = pool(&server, false);
    burst(&one_by_one, 200);
    assert_eq!(ClusterPool::client_stats(&one_by_one).unwrap().submitted, 200);
}
