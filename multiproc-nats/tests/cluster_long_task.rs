//! A task that runs for many times the queue's `ack_wait` is kept alive by its worker's
//! in-progress acks: the broker never hands it to another worker (nor to a free slot of
//! the same one), and it completes on its first delivery.

use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;
use multiproc_nats::RawTask;
use multiproc_nats::testing::NatsServer;

mod common;

multiproc_nats::test_init!();

const ACK_WAIT: Duration = Duration::from_secs(1);

#[test]
fn in_progress_acks_keep_a_long_task_from_being_redelivered() {
    let Some(server) = NatsServer::start("long-task") else { return };
    let rendezvous = common::Rendezvous::new("long");
    // Two slots: were the task redelivered, the free slot would take it and report in.
    let _worker = common::start_worker(&server, "long", 2, ACK_WAIT);
    let client = common::client(&server, "long", ACK_WAIT);

    // Watch the acks on the wire, as the broker sees them.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (nats, mut acks) = rt.block_on(async {
        let nats = async_nats::connect(server.url()).await.unwrap();
        let acks = nats.subscribe(format!("$JS.ACK.MPROC_long.{}.>", common::consumer())).await.unwrap();
        nats.flush().await.unwrap();
        (nats, acks)
    });

    let handle =
        client.submit(RawTask::new(common::report_and_wait, &rendezvous.path.display().to_string()).unwrap()).unwrap();
    let (mut conn, _) = rendezvous.accept();
    // Were the task handed out again, its second run would report in here.
    let (again_tx, mut again) = tokio::sync::oneshot::channel();
    let second = rendezvous.try_clone_listener();
    std::thread::spawn(move || {
        if let Ok(c) = second.accept() {
            let _ = again_tx.send(c);
        }
    });

    // Wait for in-progress acks covering well over twice ack_wait (one goes out
    // every third of it), so that without them the task would have been redelivered.
    rt.block_on(async {
        let mut progress = 0;
        let guard = tokio::time::sleep(common::PATIENCE);
        tokio::pin!(guard);
        while progress < 8 {
            tokio::select! {
                ack = acks.next() => {
                    let ack = ack.unwrap();
                    assert_eq!(&ack.payload[..], b"+WPI", "nothing but in-progress acks while the task runs");
                    progress += 1;
                }
                _ = &mut again => panic!("the running task was handed out again"),
                _ = &mut guard => panic!("no in-progress acks"),
            }
        }
    });
    let info = rt.block_on(async {
        let js = async_nats::jetstream::new(nats.clone());
        let stream = js.get_stream("MPROC_long").await.unwrap();
        stream.consumer_info(common::consumer()).await.unwrap()
    });
    assert_eq!(info.num_redelivered, 0, "the broker never redelivered the task");
    assert_eq!(info.num_ack_pending, 1, "the one task is in the worker's hands");

    conn.write_all(b"g").unwrap();
    let outcome = handle.wait_timeout(common::PATIENCE).expect("the task finishes");
    assert!(outcome.result.is_ok(), "{outcome:?}");
    assert_eq!(outcome.delivery, 1, "it ran once, on its first delivery");
    assert_eq!(client.stats().duplicates, 0);
}
