//! A broker without JetStream cannot keep a task queue: connecting says so, and how to
//! start the server so that it can, instead of a bare "jetstream unavailable".

use std::time::Duration;

use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, ClientConfig, ClusterPool, WorkerConfig};

mod common;

multiproc_nats::test_init!();

#[test]
fn a_broker_without_jetstream_is_named_with_the_fix() {
    let Some(server) = NatsServer::start_without_jetstream("no-jetstream") else { return };
    let broker = BrokerConfig::parse(&server.url()).unwrap();
    let queue = common::queue("nojs", Duration::from_secs(30));
    let e = ClusterPool::with_client(ClientConfig::new(broker.clone()).queue(queue.clone())).connect().unwrap_err();
    let shown = e.to_string();
    assert!(shown.contains("MPROC_nojs") && shown.contains("does not run JetStream"), "{shown}");
    assert!(shown.contains("nats-server -js"), "it says how to start the server: {shown}");

    let runner = std::sync::Arc::new(multiproc_nats::ProcessRunner::new(1));
    let e = multiproc_nats::start_worker(WorkerConfig::new(broker).queue(queue), runner).unwrap_err();
    assert!(e.to_string().contains("nats-server -js"), "a worker says it too: {e}");
}
