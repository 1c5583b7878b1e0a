//! A broker that wants credentials: the right ones work, the wrong ones are refused
//! with an error that says so — and neither the error nor any printed configuration
//! shows the secret.

use std::time::Duration;

use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, Client, ClientConfig, ClusterError, QueueConfig, RawTask, WorkerConfig};

multiproc_nats::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

#[test]
fn user_and_password_in_the_url_log_in_and_never_show() {
    let Some(server) = NatsServer::start_with("credentials", &["--user", "alice", "--pass", "Tr0ub4dor"]) else {
        return;
    };
    let good = BrokerConfig::parse(&format!("nats://alice:Tr0ub4dor@127.0.0.1:{}", server.port())).unwrap();
    let bad = BrokerConfig::parse(&format!("nats://alice:Wr0ngPass@127.0.0.1:{}", server.port())).unwrap();
    for shown in [good.to_string(), format!("{good:?}"), format!("{bad:?}")] {
        assert!(!shown.contains("Tr0ub4dor") && !shown.contains("Wr0ngPass"), "{shown}");
    }

    let e = Client::connect(ClientConfig::new(bad)).unwrap_err();
    assert!(matches!(e, ClusterError::Connect { .. }), "{e}");
    let msg = format!("{e} {e:?}");
    assert!(msg.contains("alice:***@"), "the error names the broker, secret hidden: {msg}");
    assert!(!msg.contains("Wr0ngPass"), "{msg}");

    let queue = QueueConfig::default().pool("creds").unwrap().ack_wait(Duration::from_secs(30));
    let worker = multiproc_nats::start_worker(
        WorkerConfig::new(good.clone()).queue(queue.clone()),
        std::sync::Arc::new(multiproc_nats::ProcessRunner::new(1)),
    )
    .unwrap();
    let client = Client::connect(ClientConfig::new(good).queue(queue)).unwrap();
    let o =
        client.submit(RawTask::new(square, &12u64).unwrap()).unwrap().wait_timeout(Duration::from_secs(120)).unwrap();
    assert_eq!(o.decode::<u64>().unwrap(), 144);
    worker.stop();
    worker.join().unwrap();
}

#[test]
fn a_token_works_too() {
    let Some(server) = NatsServer::start_with("token", &["--auth", "s3cr3t-t0ken"]) else { return };
    let good = BrokerConfig::parse(&format!("nats://s3cr3t-t0ken@127.0.0.1:{}", server.port())).unwrap();
    assert_eq!(good.to_string(), format!("nats://***@127.0.0.1:{}", server.port()));
    Client::connect(ClientConfig::new(good)).unwrap();
    let bad = BrokerConfig::parse(&format!("nats://wrong-t0ken@127.0.0.1:{}", server.port())).unwrap();
    let e = Client::connect(ClientConfig::new(bad)).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("wrong-t0ken"), "{e}");
}
