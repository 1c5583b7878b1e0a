//! A task whose arguments went missing from the pool's object store before a worker read
//! them (deleted, or expired after the result TTL) fails with `RemoteError::Object`
//! naming the object: never a hang, never a run on nothing.

use std::time::Duration;

use futures_util::StreamExt;
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{RawTask, RemoteError, TaskFailure};

mod common;

multiproc_nats::test_init!();

const ACK_WAIT: Duration = Duration::from_secs(30);

fn bulk(data: Vec<u8>) -> usize {
    data.len()
}

#[test]
fn a_task_whose_arguments_are_gone_fails_naming_the_object() {
    let Some(server) = NatsServer::start("missing-object") else { return };
    // The client makes the pool's object store; no worker runs yet.
    let client = common::client(&server, "missing", ACK_WAIT);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (store, mut stored) = rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
        let store = js.get_object_store("MPROC_missing_objects").await.unwrap();
        let stored = store.watch().await.unwrap();
        (store, stored)
    });

    // 2 MiB: over the broker's 1 MiB limit, so its argument travels as an object.
    let handle = client.submit(RawTask::new(bulk, &vec![7u8; 2 << 20]).unwrap()).unwrap();
    let name = rt.block_on(async { stored.next().await.expect("the argument is stored").unwrap().name });
    rt.block_on(store.delete(&name)).unwrap();

    let _worker = common::start_worker(&server, "missing", 1, ACK_WAIT);
    let outcome = handle.wait_timeout(common::PATIENCE).expect("an outcome, not a hang");
    match outcome.result {
        Err(TaskFailure { error: RemoteError::Object { object, message }, .. }) => {
            assert_eq!(object, name);
            assert!(message.starts_with("not found"), "{message}");
        }
        other => panic!("expected the missing object named, got {other:?}"),
    }
    assert!(outcome.ran_on.is_some(), "the worker said so");
}

fn square(n: u64) -> u64 {
    n * n
}

/// Arguments replaced in the object store by garbage (a hostile or broken writer) fail
/// their task with an error, once, and the worker goes on serving.
#[test]
fn arguments_replaced_by_garbage_fail_their_task_and_the_worker_goes_on() {
    let Some(server) = NatsServer::start("garbled-object") else { return };
    let client = common::client(&server, "garbled", ACK_WAIT);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (store, mut stored) = rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
        let store = js.get_object_store("MPROC_garbled_objects").await.unwrap();
        let stored = store.watch().await.unwrap();
        (store, stored)
    });

    let handle = client.submit(RawTask::new(bulk, &vec![7u8; 2 << 20]).unwrap()).unwrap();
    let name = rt.block_on(async { stored.next().await.expect("the argument is stored").unwrap().name });
    let garbage = common::pseudo_random_bytes(9, 3 << 20);
    rt.block_on(store.put(name.as_str(), &mut garbage.as_slice())).unwrap();

    let _worker = common::start_worker(&server, "garbled", 1, ACK_WAIT);
    let outcome = handle.wait_timeout(common::PATIENCE).expect("an outcome, not a hang");
    assert!(outcome.result.is_err(), "garbage is no argument: {:?}", outcome.result.map(|_| ()));
    let next = client.submit(RawTask::new(square, &9u64).unwrap()).unwrap();
    let next = next.wait_timeout(common::PATIENCE).expect("the worker goes on");
    assert_eq!(next.decode::<u64>().unwrap(), 81);
    drop(client);
    let left = common::objects_left_behind(&server, &common::queue("garbled", ACK_WAIT));
    assert_eq!((left.0, left.1), (0, 0), "nothing left in the object store: {left:?}");
}
