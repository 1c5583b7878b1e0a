//! An operator can see the queue: how many tasks wait for a worker of their build, how
//! many are in a worker's hands, and whether that build has workers asking for more.

use std::io::Write;
use std::time::Duration;

use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BuildStatus, RawTask};

mod common;

multiproc_nats::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

const ACK_WAIT: Duration = Duration::from_secs(30);

fn this_build(status: &multiproc_nats::QueueStatus) -> BuildStatus {
    let me = multiproc::remote::fingerprint();
    status.builds.iter().find(|b| b.build == me).cloned().expect("this build has its consumer")
}

/// The status once `ready` holds: the broker's view catches up with what the client
/// saw (a hang guard panics after PATIENCE).
fn status_when(
    client: &multiproc_nats::Client,
    ready: impl Fn(&multiproc_nats::QueueStatus) -> bool,
) -> multiproc_nats::QueueStatus {
    let started = std::time::Instant::now();
    loop {
        let status = client.status().unwrap();
        if ready(&status) {
            return status;
        }
        assert!(started.elapsed() < common::PATIENCE, "the queue never got there: {status}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_status_shows_waiting_and_running_tasks_per_build() {
    let Some(server) = NatsServer::start("queue-status") else { return };
    let client = common::client(&server, "status", ACK_WAIT);
    let queued: Vec<_> = (0..3u64).map(|i| client.submit(RawTask::new(square, &i).unwrap()).unwrap()).collect();
    // Each submission is on the queue once the broker confirmed it.
    let status = status_when(&client, |s| s.tasks == 3);
    let mine = this_build(&status);
    assert_eq!((status.tasks, mine.waiting, mine.in_flight, mine.pull_requests), (3, 3, 0, 0), "{status}");
    assert_eq!(status.replicas, 1);
    let shown = status.to_string();
    assert!(
        shown.starts_with("pool status: 3 tasks on the queue, 0 results waiting for their clients (1 replicas)"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("build {:016x}: 3 waiting, 0 in flight", multiproc::remote::fingerprint())),
        "{shown}"
    );

    // A worker takes them, then holds one that waits for the test's word.
    let worker = common::start_worker(&server, "status", 1, ACK_WAIT);
    for h in queued {
        h.wait_timeout(common::PATIENCE).expect("the worker runs the queued tasks");
    }
    // Each leaves the queue once acked, just after its result reached the client.
    status_when(&client, |s| s.tasks == 0);
    let rendezvous = common::Rendezvous::new("status");
    let held =
        client.submit(RawTask::new(common::report_and_wait, &rendezvous.path.display().to_string()).unwrap()).unwrap();
    let (mut conn, _) = rendezvous.accept();
    let status = client.status().unwrap();
    let mine = this_build(&status);
    assert_eq!((status.tasks, mine.waiting, mine.in_flight), (1, 0, 1), "{status}");

    let from_outside = multiproc_nats::status(
        &multiproc_nats::BrokerConfig::parse(&server.url()).unwrap(),
        &multiproc_nats::QueueConfig::default().pool("status").unwrap(),
    )
    .unwrap();
    let outside = this_build(&from_outside);
    assert_eq!((from_outside.tasks, outside.waiting, outside.in_flight), (1, 0, 1), "an operator's look sees it too");
    let e = multiproc_nats::status(
        &multiproc_nats::BrokerConfig::parse(&server.url()).unwrap(),
        &multiproc_nats::QueueConfig::default().pool("nosuchpool").unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("MPROC_nosuchpool"), "{e}");

    conn.write_all(b"g").unwrap();
    let o = held.wait_timeout(common::PATIENCE).expect("the held task finishes");
    assert_eq!(o.ran_on.map(|r| r.worker_pid), Some(worker.pid()));
}

#[test]
fn the_status_lists_live_workers_with_their_build_and_stats() {
    let Some(server) = NatsServer::start("live-workers") else { return };
    // Workers beat every third of ack_wait.
    let ack_wait = Duration::from_secs(1);
    let workers =
        [common::start_worker(&server, "live", 1, ack_wait), common::start_worker(&server, "live", 1, ack_wait)];
    let client = common::client(&server, "live", ack_wait);
    let handles: Vec<_> = (0..3u64).map(|i| client.submit(RawTask::new(square, &i).unwrap()).unwrap()).collect();
    for h in handles {
        h.wait_timeout(common::PATIENCE).expect("the workers run the tasks");
    }
    let status =
        status_when(&client, |s| s.workers.len() == 2 && s.workers.iter().map(|w| w.stats.completed).sum::<u64>() == 3);
    let mut pids: Vec<u32> = status.workers.iter().map(|w| w.pid).collect();
    pids.sort();
    let mut expected: Vec<u32> = workers.iter().map(common::Worker::pid).collect();
    expected.sort();
    assert_eq!(pids, expected, "{status}");
    for w in &status.workers {
        assert_eq!(w.build, multiproc::remote::fingerprint(), "{status}");
        assert!(w.slots >= 1 && w.running == 0, "{status}");
    }
    let shown = status.to_string();
    assert!(shown.contains(&format!(":{} (build {:016x})", expected[0], multiproc::remote::fingerprint())), "{shown}");
}
