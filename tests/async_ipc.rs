//! Async send and receive on `Queue`, `Connection` and the manager's `QueueProxy`, on a
//! current-thread tokio runtime with a ticker task beside them. The other side (a child
//! process) only acts once the ticker has set an event: a future that blocked the
//! runtime's one thread would stop the ticker, and the test would never end. A future
//! dropped while it waits (a lost `timeout`) takes and puts nothing.

#[path = "common/ticker.rs"]
mod ticker;

use std::time::Duration;

use multiproc::manager::QueueProxy;
use multiproc::{Connection, Event, Manager, Pipe, Process, Queue};

multiproc::test_init!();

fn produce_after((go, q): (Event, Queue<u32>)) {
    go.wait().unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
}

fn consume_after((go, q): (Event, Queue<u32>)) {
    go.wait().unwrap();
    for _ in 0..3 {
        q.get().unwrap();
    }
}

fn echo_after((go, conn): (Event, Connection<Vec<u8>>)) {
    go.wait().unwrap();
    let got = conn.recv().unwrap();
    conn.send(got).unwrap();
}

fn proxy_produce_after((go, q): (Event, QueueProxy<u32>)) {
    go.wait().unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
}

fn proxy_consume_after((go, q): (Event, QueueProxy<u32>)) {
    go.wait().unwrap();
    for _ in 0..2 {
        q.get().unwrap();
    }
}

fn start<A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static>(f: fn(A), arg: A) -> Process {
    let mut p = Process::new(f, arg);
    p.start().unwrap();
    p
}

#[test]
fn queue_get_async_and_put_async_wait_without_blocking_the_runtime() {
    let go = Event::new().unwrap();
    let q = Queue::<u32>::new().unwrap();
    let producer = start(produce_after, (go.clone(), q.clone()));
    let rt = ticker::runtime();
    let (got, ticks) = rt.block_on(async {
        let ticks = ticker::spawn_ticker(go.clone(), 20);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(q.get_async().await.unwrap());
        }
        (got, ticks.now())
    });
    assert_eq!(got, [0, 1, 2]);
    assert!(ticks >= 20);
    producer.join().unwrap();

    // A bounded queue, full: put_async waits for the consumer the ticker releases.
    let go = Event::new().unwrap();
    let q = Queue::<u32>::bounded(1).unwrap();
    q.put(100).unwrap();
    let consumer = start(consume_after, (go.clone(), q.clone()));
    rt.block_on(async {
        ticker::spawn_ticker(go.clone(), 10);
        q.put_async(101).await.unwrap();
        q.put_async(102).await.unwrap();
    });
    consumer.join().unwrap();
    assert!(q.empty());
}

#[test]
fn a_dropped_get_async_takes_nothing() {
    let q = Queue::<u32>::new().unwrap();
    let rt = ticker::runtime();
    rt.block_on(async {
        for _ in 0..3 {
            assert!(tokio::time::timeout(Duration::from_millis(5), q.get_async()).await.is_err());
        }
    });
    q.put(9).unwrap();
    q.put(10).unwrap();
    // Every helper of a dropped get has stopped or will stop without taking: both are here.
    assert_eq!(q.get().unwrap(), 9);
    assert_eq!(q.get().unwrap(), 10);
    // And a dropped put_async on a full queue put nothing.
    let b = Queue::<u32>::bounded(1).unwrap();
    b.put(1).unwrap();
    rt.block_on(async {
        assert!(tokio::time::timeout(Duration::from_millis(5), b.put_async(2)).await.is_err());
    });
    assert_eq!(b.get().unwrap(), 1);
    assert!(b.get_nowait().is_err());
}

#[test]
fn connection_send_async_and_recv_async_wait_without_blocking_the_runtime() {
    let go = Event::new().unwrap();
    let (mine, theirs) = Pipe::duplex::<Vec<u8>>().unwrap();
    let child = start(echo_after, (go.clone(), theirs));
    // Larger than any socket buffer: the send has to wait for the child to read.
    let big = vec![7u8; 8 << 20];
    let rt = ticker::runtime();
    let (back, ticks) = rt.block_on(async {
        let ticks = ticker::spawn_ticker(go.clone(), 20);
        mine.send_async(big.clone()).await.unwrap();
        let back = mine.recv_async().await.unwrap();
        (back, ticks.now())
    });
    assert!(back == big, "the echo is the message sent");
    assert!(ticks >= 20);
    child.join().unwrap();
    // The child is gone: a receive says so.
    let end = rt.block_on(mine.recv_async());
    assert!(matches!(end, Err(multiproc::PipeError::Closed)), "{end:?}");
}

#[test]
fn manager_queue_proxy_async_calls_wait_without_blocking_the_runtime() {
    let manager = Manager::start().unwrap();
    let q = manager.queue::<u32>(1).unwrap();
    let go = Event::new().unwrap();
    let producer = start(proxy_produce_after, (go.clone(), q.clone()));
    let rt = ticker::runtime();
    let got = rt.block_on(async {
        ticker::spawn_ticker(go.clone(), 20);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(q.get_async().await.unwrap());
        }
        got
    });
    assert_eq!(got, [0, 1, 2]);
    producer.join().unwrap();

    // Full (maxsize 1): put_async waits for the consumer the ticker releases; a dropped
    // get_async took nothing.
    let go = Event::new().unwrap();
    q.put(50).unwrap();
    let consumer = start(proxy_consume_after, (go.clone(), q.clone()));
    rt.block_on(async {
        ticker::spawn_ticker(go.clone(), 10);
        q.put_async(51).await.unwrap();
    });
    consumer.join().unwrap();
    rt.block_on(async {
        assert!(tokio::time::timeout(Duration::from_millis(5), q.get_async()).await.is_err());
    });
    q.put(52).unwrap();
    assert_eq!(q.get().unwrap(), 52);
}
