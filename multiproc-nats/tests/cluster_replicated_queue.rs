//! On a JetStream cluster of three, a pool's queue is replicated on all three by default,
//! and loses
//! nothing when the server leading the queue is killed in the middle of a run: the
//! cluster elects another leader, clients and workers carry on, and every task gets its
//! one correct result.

use std::time::Duration;

use multiproc_nats::testing::NatsCluster;
use multiproc_nats::{BrokerConfig, Client, ClientConfig, RawTask};

mod common;

multiproc_nats::test_init!();

fn slow_square(n: u64) -> u64 {
    // Long enough that the run is still going when the leader goes down.
    std::thread::sleep(Duration::from_millis(5));
    n * n
}

const ACK_WAIT: Duration = Duration::from_secs(3);

/// The stream's replica count and the name of the server leading it, asked of the node
/// at `url`.
fn stream_layout(url: &str, stream: &str) -> (usize, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let nats = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(nats);
        let info = js.get_stream(stream).await.unwrap().info().await.unwrap().clone();
        let leader = info.cluster.and_then(|c| c.leader).expect("a replicated stream has a leader");
        (info.config.num_replicas, leader)
    })
}

#[test]
fn a_replicated_queue_survives_the_loss_of_its_leader() {
    let Some(mut cluster) = NatsCluster::start("replicas", 3) else { return };
    let url = cluster.url();
    // No replicas given: what the cluster offers, up to 3.
    let queue = common::queue("repl", ACK_WAIT);
    let config = ClientConfig::new(BrokerConfig::parse(&url).unwrap()).queue(queue);
    let client = Client::connect(config).expect("the client connects to the cluster");
    let (replicas, leader) = stream_layout(&cluster.node(0).url(), "MPROC_repl");
    assert_eq!(replicas, 3, "the queue is kept on three servers");
    assert_eq!(stream_layout(&cluster.node(0).url(), "MPROC_repl_results").0, 3, "so are the results");
    let _workers =
        [common::start_worker_at(&url, "repl", 2, ACK_WAIT), common::start_worker_at(&url, "repl", 2, ACK_WAIT)];

    let handles: Vec<_> =
        (0..400u64).map(|i| (i, client.submit(RawTask::new(slow_square, &i).unwrap()).unwrap())).collect();
    let mut handles = handles.into_iter();
    let mut finished = Vec::new();
    for (i, h) in handles.by_ref().take(50) {
        finished.push((i, h.wait_timeout(common::PATIENCE).expect("results before the leader goes")));
    }
    let leader: usize = leader.trim_start_matches('n').parse().unwrap();
    cluster.node(leader).kill();
    for (i, h) in handles {
        finished.push((i, h.wait_timeout(common::PATIENCE).expect("every task gets an outcome")));
    }
    for (i, o) in &finished {
        assert_eq!(o.decode::<u64>().unwrap(), i * i, "task {i}: {o:?}");
    }
    let stats = client.stats();
    eprintln!("client after losing the leader: {stats:?}");
    assert_eq!((stats.submitted, stats.finished, stats.lost), (400, 400, 0));
    assert_eq!(client.outstanding(), 0);
}
