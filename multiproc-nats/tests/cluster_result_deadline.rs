//! A caller never waits forever: with a result deadline, a task whose outcome does not
//! come in time (here: no worker serves the pool at all) fails with an error saying
//! what timed out, and leaves the queue, so a worker started later does not run it for
//! nobody. A task that finishes in time is not touched.

use std::time::Duration;

use multiproc::{RemoteFailure, TaskError};
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, Client, ClientConfig, ClusterPool, RawTask, RemoteError};

mod common;

multiproc_nats::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

const ACK_WAIT: Duration = Duration::from_secs(30);
const DEADLINE: Duration = Duration::from_millis(500);

fn config(server: &NatsServer, pool: &str) -> ClientConfig {
    ClientConfig::new(BrokerConfig::parse(&server.url()).unwrap())
        .queue(common::queue(pool, ACK_WAIT))
        .result_deadline(DEADLINE)
}

#[test]
fn a_cluster_pools_map_fails_at_the_deadline_instead_of_hanging() {
    let Some(server) = NatsServer::start("pool-deadline") else { return };
    let pool = ClusterPool::with_client(config(&server, "pdeadline")).processes(2).connect().unwrap();
    let map = pool.map_async(square, 0..10u64);
    assert!(map.wait_timeout(common::PATIENCE), "the map ends (hang guard)");
    match map.get() {
        Err(TaskError::Remote { task, kind: RemoteFailure::Lost, message }) => {
            assert!(task.contains("square"), "{task}");
            assert!(message.contains("result deadline of 500ms"), "it says what timed out: {message}");
        }
        other => panic!("unexpected: {other:?}"),
    }
}

#[test]
fn a_task_past_its_deadline_fails_and_leaves_the_queue() {
    let Some(server) = NatsServer::start("deadline") else { return };
    let client = Client::connect(config(&server, "deadline")).unwrap();
    let handles: Vec<_> = (0..3u64).map(|i| client.submit(RawTask::new(square, &i).unwrap()).unwrap()).collect();
    for h in handles {
        let o = h.wait_timeout(common::PATIENCE).expect("the deadline ends the wait (hang guard)");
        let e = o.result.unwrap_err();
        assert_eq!(e.error, RemoteError::Deadline { after: DEADLINE });
        assert!(e.to_string().contains("square") && e.to_string().contains("no outcome within"), "{e}");
    }
    assert_eq!(client.stats().past_deadline, 3);
    assert_eq!(client.outstanding(), 0);

    // Gone from the queue: the worker that comes now runs only the new task, in time
    // (a deadline the worker's start cannot pass).
    let worker = common::start_worker(&server, "deadline", 1, ACK_WAIT);
    let patient = Client::connect(config(&server, "deadline").result_deadline(common::PATIENCE)).unwrap();
    let o = patient.submit(RawTask::new(square, &9u64).unwrap()).unwrap().wait_timeout(common::PATIENCE).unwrap();
    assert_eq!(o.decode::<u64>().unwrap(), 81, "a task that finishes in time is not touched");
    assert_eq!(patient.stats().past_deadline, 0);
    assert_eq!(o.ran_on.map(|r| r.worker_pid), Some(worker.pid()));
    let messages = queued_tasks(&server, "MPROC_deadline");
    assert_eq!(messages, 0, "the tasks past their deadline were taken off the queue");
    assert_eq!(client.stats().duplicates, 0, "none of them ran");
}

fn queued_tasks(server: &NatsServer, stream: &str) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let nats = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(nats);
        js.get_stream(stream).await.unwrap().info().await.unwrap().state.messages
    })
}
