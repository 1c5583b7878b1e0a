//! A task whose arguments are in the pool's object store comes to a worker again after
//! it settled (its arguments deleted by then): the worker refuses it naming the missing
//! object, the client, which no longer waits for it, drops the refusal as a duplicate,
//! the caller's outcome stays the one it had, and neither the queue nor the object store
//! keeps anything.
//!
//! A true redelivery after settling needs a worker to die between storing its result
//! and acking its task (microseconds, which no test can aim at from outside); the same
//! task message published to the queue again after its task settled goes down the same
//! path on both sides: the worker reads the arguments on arrival, whatever the delivery
//! count, and the client tells duplicates by task id.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, RawTask};

mod common;

multiproc_nats::test_init!();

const ACK_WAIT: Duration = Duration::from_secs(10);

/// 4 MiB: four times the broker's limit.
const LARGE: usize = 4 << 20;

fn reversed(mut data: Vec<u8>) -> Vec<u8> {
    data.reverse();
    data
}

#[test]
fn a_task_back_after_it_settled_finds_its_arguments_gone_and_changes_nothing() {
    let Some(server) = NatsServer::start("args-gone-again") else { return };
    let client = common::client(&server, "argsgone", ACK_WAIT);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (js, mut tasks) = rt.block_on(async {
        let nats = async_nats::connect(server.url()).await.unwrap();
        let tasks = nats.subscribe("mproc.argsgone.tasks.*").await.unwrap();
        nats.flush().await.unwrap();
        (async_nats::jetstream::new(nats), tasks)
    });

    let data: Vec<u8> = (0..LARGE).map(|i| (i * 13 % 251) as u8).collect();
    let (outcomes, heard) = (Arc::new(AtomicU32::new(0)), mpsc::channel());
    let (count, tx) = (outcomes.clone(), heard.0);
    let id = client
        .submit_with(RawTask::new(reversed, &data).unwrap(), move |o| {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(o);
        })
        .unwrap();
    // The task's message as the queue got it: a head naming the arguments' object.
    let sent = rt.block_on(async { tokio::time::timeout(common::PATIENCE, tasks.next()).await }).unwrap().unwrap();
    assert!(sent.payload.len() < 64 << 10, "the arguments travel apart, in the object store");

    let _worker = common::start_worker(&server, "argsgone", 1, ACK_WAIT);
    let outcome = heard.1.recv_timeout(common::PATIENCE).expect("the task's outcome");
    let mut want = data;
    want.reverse();
    assert!(outcome.decode::<Vec<u8>>().unwrap() == want, "the result came back exact");
    let queue = common::queue("argsgone", ACK_WAIT);
    let broker = BrokerConfig::parse(&server.url()).unwrap();
    assert_eq!(multiproc_nats::status(&broker, &queue).unwrap().objects, 0, "its arguments were deleted");

    // The same task once more (a fresh message, so the broker's duplicate window lets
    // it in): its arguments are gone.
    let (mut results, before) = rt.block_on(async {
        let results = async_nats::connect(server.url()).await.unwrap();
        let sub = results.subscribe(format!("mproc.argsgone.results.{}", client.id())).await.unwrap();
        results.flush().await.unwrap();
        (sub, client.stats().duplicates)
    });
    rt.block_on(async { js.publish(sent.subject.clone(), sent.payload.clone()).await.unwrap().await.unwrap() });
    let refusal = rt.block_on(async { tokio::time::timeout(common::PATIENCE, results.next()).await }).unwrap().unwrap();
    let object = format!("{}-{id}-args", client.id());
    let said = String::from_utf8_lossy(&refusal.payload);
    assert!(said.contains(&object) && said.contains("not found"), "the worker names the missing object: {said}");

    // The client drops it, and the worker takes the task off the queue (no event says
    // so: the client's count and the queue are looked at until they do).
    let until = Instant::now() + common::PATIENCE;
    let settled = || client.stats().duplicates > before && multiproc_nats::status(&broker, &queue).unwrap().tasks == 0;
    while !settled() {
        assert!(Instant::now() < until, "the refusal dropped as a duplicate, the task off the queue");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(outcomes.load(Ordering::SeqCst), 1, "one outcome, the first");
    assert_eq!(client.outstanding(), 0);
    let status = multiproc_nats::status(&broker, &queue).unwrap();
    assert_eq!((status.objects, status.object_bytes), (0, 0), "nothing left in the object store");
    client.close();
}
