//! A worker process SIGKILLed in the middle of a task: the broker hands the task to
//! another worker once the dead one stops acking, and the caller gets exactly one
//! result, from the survivor; the tasks queued behind it are not lost either.

use std::io::Write;
use std::time::Duration;

use multiproc_nats::RawTask;
use multiproc_nats::testing::NatsServer;

mod common;

multiproc_nats::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

/// Short, so the dead worker's task comes back quickly.
const ACK_WAIT: Duration = Duration::from_secs(1);

#[test]
fn a_killed_workers_task_is_finished_by_another_exactly_once() {
    let Some(server) = NatsServer::start("worker-killed") else { return };
    let rendezvous = common::Rendezvous::new("killed");
    let first = common::start_worker(&server, "killed", 1, ACK_WAIT);
    let client = common::client(&server, "killed", ACK_WAIT);

    let held =
        client.submit(RawTask::new(common::report_and_wait, &rendezvous.path.display().to_string()).unwrap()).unwrap();
    let (_conn, who) = rendezvous.accept();
    assert_eq!(who, first.pid().to_string(), "the first worker runs the task");
    // Queued behind it while the first worker is busy.
    let others: Vec<_> = (0..20u64).map(|i| client.submit(RawTask::new(square, &i).unwrap()).unwrap()).collect();

    first.kill();
    let second = common::start_worker(&server, "killed", 2, ACK_WAIT);
    let (mut conn, who) = rendezvous.accept();
    assert_eq!(who, second.pid().to_string(), "the task came back, to the second worker");
    conn.write_all(b"g").unwrap();

    let outcome = held.wait_timeout(common::PATIENCE).expect("the task has an outcome");
    assert_eq!(outcome.decode::<u32>().unwrap(), second.pid());
    assert_eq!(outcome.ran_on.as_ref().map(|r| r.worker_pid), Some(second.pid()));
    assert!(outcome.delivery >= 2, "it was a redelivery: {outcome:?}");
    for (i, h) in others.into_iter().enumerate() {
        let o = h.wait_timeout(common::PATIENCE).expect("queued tasks are not lost");
        assert_eq!(o.decode::<u64>().unwrap(), (i * i) as u64);
    }
    let stats = client.stats();
    assert_eq!((stats.submitted, stats.finished), (21, 21));
    assert_eq!(client.outstanding(), 0);
}
