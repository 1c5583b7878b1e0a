//! The broker is killed in the middle of a run and started again on the same store:
//! tasks submitted before, during and after the outage all get their one correct
//! result, whatever was in flight when it went down; and no task the workers acked is
//! left on the queue (a broker killed before it removed an acked task from its store
//! brings it back, behind its consumer's ack floor, where nothing would ever take it).

use std::time::Duration;

use multiproc_nats::RawTask;
use multiproc_nats::testing::NatsServer;

mod common;

multiproc_nats::test_init!();

fn slow_square(n: u64) -> u64 {
    // Long enough that the run is still going when the broker goes down.
    std::thread::sleep(Duration::from_millis(5));
    n * n
}

const ACK_WAIT: Duration = Duration::from_secs(2);

#[test]
fn every_result_arrives_across_a_broker_restart() {
    let Some(mut server) = NatsServer::start("broker-restart") else { return };
    let _workers =
        [common::start_worker(&server, "restart", 2, ACK_WAIT), common::start_worker(&server, "restart", 2, ACK_WAIT)];
    let client = common::client(&server, "restart", ACK_WAIT);
    let submit = |range: std::ops::Range<u64>| -> Vec<_> {
        range.map(|i| (i, client.submit(RawTask::new(slow_square, &i).unwrap()).unwrap())).collect()
    };

    let before = submit(0..600);
    let mut handles = before.into_iter();
    // A good part of the run is done: now the broker dies.
    let mut finished = Vec::new();
    for (i, h) in handles.by_ref().take(100) {
        finished.push((i, h.wait_timeout(common::PATIENCE).expect("results before the outage")));
    }
    server.kill();
    let during = submit(600..700);
    server.restart();
    let after = submit(700..800);

    for (i, h) in handles.chain(during).chain(after) {
        finished.push((i, h.wait_timeout(common::PATIENCE).expect("every task gets an outcome")));
    }
    assert_eq!(finished.len(), 800);
    for (i, o) in &finished {
        assert_eq!(o.decode::<u64>().unwrap(), i * i, "task {i}: {o:?}");
    }
    let stats = client.stats();
    eprintln!("client after the restart: {stats:?}");
    assert_eq!((stats.submitted, stats.finished), (800, 800));
    assert_eq!(client.outstanding(), 0);
    let left = common::wait_for_empty_queue(&server, "restart", ACK_WAIT);
    assert_eq!(left, 0, "acked tasks left on the queue after the restart");
}
