//! Queue settings apply when the queue is created. A later client or worker that gives
//! another value fails to connect, naming the setting and both values, instead of being
//! silently ignored; one that leaves a setting out takes what the queue has.

use std::time::Duration;

use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, Client, ClientConfig, QueueConfig, WorkerConfig};

mod common;

multiproc_nats::test_init!();

fn connect(server: &NatsServer, queue: QueueConfig) -> Result<Client, multiproc_nats::ClusterError> {
    Client::connect(ClientConfig::new(BrokerConfig::parse(&server.url()).unwrap()).queue(queue))
}

#[test]
fn a_setting_other_than_the_queues_is_an_error_not_ignored() {
    let Some(server) = NatsServer::start("conflicting-settings") else { return };
    let pool = || QueueConfig::default().pool("conf").unwrap();
    let _first = connect(&server, pool().ack_wait(Duration::from_secs(2)).max_deliver(3)).unwrap();

    let e = connect(&server, pool().ack_wait(Duration::from_secs(5))).unwrap_err().to_string();
    assert!(e.contains("ack_wait is 2s, this one asks for 5s"), "{e}");
    let e = connect(&server, pool().max_deliver(3).replicas(3).unwrap()).unwrap_err().to_string();
    assert!(e.contains("replicas is 1, this one asks for 3") && e.contains("MPROC_conf"), "{e}");

    let runner = std::sync::Arc::new(multiproc_nats::ProcessRunner::new(1));
    let worker = WorkerConfig::new(BrokerConfig::parse(&server.url()).unwrap()).queue(pool().max_deliver(7));
    let e = multiproc_nats::start_worker(worker, runner).unwrap_err().to_string();
    assert!(e.contains("max_deliver is 3, this one asks for 7"), "a worker hears it too: {e}");

    // The same settings, or none: what the queue has.
    connect(&server, pool().ack_wait(Duration::from_secs(2)).max_deliver(3)).unwrap();
    connect(&server, pool()).unwrap();
}
