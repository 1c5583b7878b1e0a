//! The broker is killed and started again (same port, same store) while a large task's
//! payloads are on their way through the pool's object store: while the client stores
//! the task's arguments, while a worker reads them, while the worker stores its result,
//! and while the client reads it, and once for 40 s while the client reads it. Each time
//! the caller gets the exact result, once, and once the pool is joined the object store
//! holds nothing: no object, and no chunk of an upload the broker's death cut short.
//!
//! Where each transfer is, the test sees on the broker's subjects (a chunk stored, a
//! description stored, the consumer an object is read through asked for): the kill comes
//! right after, while the rest is still on its way (or, for a small machine's fast
//! transfer, just after it ended: the test's claims hold either way).

use std::time::Duration;

use futures_util::StreamExt;
use multiproc_nats::testing::NatsServer;

mod common;

multiproc_nats::test_init!();

const ACK_WAIT: Duration = Duration::from_secs(5);

/// 8 MiB: eight times the broker's limit, some eight chunks each way.
const LARGE: usize = 8 << 20;

const POOL: &str = "bigrestart";

/// The bytes it was given, reversed: as large a result as the argument.
fn reversed(mut data: Vec<u8>) -> Vec<u8> {
    data.reverse();
    data
}

/// What the test watches: the bucket's subjects, where chunks (`C`) and descriptions
/// (`M`) are stored, and the requests for the consumers an object is read through.
struct Bucket {
    rt: tokio::runtime::Runtime,
    sub: futures_util::stream::Select<async_nats::Subscriber, async_nats::Subscriber>,
}

/// A chunk stored, a description stored, a read begun.
const CHUNK: &str = "$O.MPROC_bigrestart_objects.C.";
const DESCRIPTION: &str = "$O.MPROC_bigrestart_objects.M.";
const READ: &str = "$JS.API.CONSUMER.CREATE.OBJ_MPROC_bigrestart_objects";

impl Bucket {
    fn watch(server: &NatsServer) -> Bucket {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sub = rt.block_on(async {
            let nats = async_nats::connect(server.url()).await.unwrap();
            let stored = nats.subscribe(format!("$O.MPROC_{POOL}_objects.>")).await.unwrap();
            let reads = nats.subscribe("$JS.API.CONSUMER.CREATE.>").await.unwrap();
            nats.flush().await.unwrap();
            futures_util::stream::select(stored, reads)
        });
        Bucket { rt, sub }
    }

    /// Waits until the client's read of a result began: the task's arguments were read
    /// (a description stored, a read begun), then its result (the same once more).
    fn client_read_began(&mut self) {
        for _ in 0..2 {
            self.next(DESCRIPTION);
            self.next(READ);
        }
    }

    /// Waits for the next message on a subject starting with `wanted` (one of the above).
    fn next(&mut self, wanted: &str) {
        let sub = &mut self.sub;
        let seen = self.rt.block_on(async {
            let next = async {
                while let Some(msg) = sub.next().await {
                    if msg.subject.starts_with(wanted) {
                        return true;
                    }
                }
                false
            };
            tokio::time::timeout(common::PATIENCE, next).await
        });
        assert_eq!(seen, Ok(true), "a message on {wanted}...");
    }
}

#[test]
fn large_payloads_survive_a_broker_restart_at_every_stage_of_their_transfer() {
    let Some(mut server) = NatsServer::start("large-restart") else { return };
    let pool = common::cluster_pool(&server, POOL, ACK_WAIT, 1);
    let run = |seed: u64| {
        let data = common::pseudo_random_bytes(seed, LARGE);
        (data.clone(), pool.apply_async(reversed, data))
    };
    let check = |(mut data, handle): (Vec<u8>, multiproc::AsyncResult<Vec<u8>>), stage: &str| {
        data.reverse();
        let got = handle.get_timeout(common::PATIENCE).unwrap_or_else(|e| panic!("{stage}: {e}"));
        assert!(got == data, "{stage}: the result came back exact");
    };

    // The client stores the arguments (no worker yet): killed after the first chunk.
    let mut bucket = Bucket::watch(&server);
    let task = run(1);
    bucket.next(CHUNK);
    server.restart();
    let _worker = common::start_worker(&server, POOL, 1, ACK_WAIT);
    check(task, "the client's upload");

    // A worker reads the arguments: killed once its read began.
    let mut bucket = Bucket::watch(&server);
    let task = run(2);
    bucket.next(DESCRIPTION);
    bucket.next(READ);
    server.restart();
    check(task, "the worker's read");

    // The worker stores its result: killed after its first chunk.
    let mut bucket = Bucket::watch(&server);
    let task = run(3);
    bucket.next(DESCRIPTION);
    bucket.next(CHUNK);
    server.restart();
    check(task, "the worker's upload");

    // The client reads the result: killed once its read began.
    let mut bucket = Bucket::watch(&server);
    let task = run(4);
    bucket.client_read_began();
    server.restart();
    check(task, "the client's read");

    close_leaving_nothing(&pool, &server);
}

/// How long the broker stays down in the long outage: far longer than a reconnection
/// or a JetStream request's own time limit. The client's read of the object waits for
/// the broker to come back (each try up to the object store's transfer limit) rather
/// than fail the item whose result is stored.
const LONG_OUTAGE: Duration = Duration::from_secs(40);

#[test]
fn a_result_survives_a_long_outage_while_the_client_reads_it() {
    let Some(mut server) = NatsServer::start("large-outage") else { return };
    let pool = common::cluster_pool(&server, POOL, ACK_WAIT, 1);
    let _worker = common::start_worker(&server, POOL, 1, ACK_WAIT);
    let mut data = common::pseudo_random_bytes(5, LARGE);
    // The client reads the result: the broker is killed once its read began, and stays
    // away for the outage (the scenario's length, not a wait for an event).
    let mut bucket = Bucket::watch(&server);
    let handle = pool.apply_async(reversed, data.clone());
    bucket.client_read_began();
    server.kill();
    std::thread::sleep(LONG_OUTAGE);
    server.restart();
    data.reverse();
    let got = handle.get_timeout(common::PATIENCE).unwrap_or_else(|e| panic!("after a long outage: {e}"));
    assert!(got == data, "the result came back exact");
    close_leaving_nothing(&pool, &server);
}

/// Closes and joins the pool, then checks its object store holds nothing.
fn close_leaving_nothing(pool: &multiproc::Pool, server: &NatsServer) {
    pool.close();
    pool.join().unwrap();
    assert_eq!(
        common::objects_left_behind(server, &common::queue(POOL, ACK_WAIT)),
        (0, 0, vec![]),
        "nothing left behind"
    );
}
