//! A task that takes down every worker *process* that runs it (not just its own child)
//! is handed out `max_deliver` times and no more: then its caller gets `Lost`, the
//! message leaves the queue, and the pool goes on with other tasks.

use std::time::Duration;

use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, Client, ClientConfig, RawTask, RemoteError};

mod common;

multiproc_nats::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

/// Kills the worker that runs it (the parent of the task's process).
fn kill_my_worker(_: ()) {
    let worker = multiproc::parent_process().expect("a task process has a worker").pid();
    let _ = std::process::Command::new("kill").args(["-9", &worker.to_string()]).status();
    std::thread::sleep(Duration::from_secs(3600));
}

const ACK_WAIT: Duration = Duration::from_millis(500);

#[test]
fn a_task_that_kills_every_worker_is_given_up_after_max_deliver() {
    let Some(server) = NatsServer::start("task-lost") else { return };
    // The client comes first, so the queue is made with its settings.
    let queue = common::queue("lost", ACK_WAIT).max_deliver(2);
    let client = Client::connect(ClientConfig::new(BrokerConfig::parse(&server.url()).unwrap()).queue(queue)).unwrap();
    let handle = client.submit(RawTask::new(kill_my_worker, &()).unwrap()).unwrap();
    for _ in 0..2 {
        let worker = common::start_worker(&server, "lost", 1, ACK_WAIT);
        worker.0.join().unwrap();
        assert_eq!(worker.0.exitcode(), Some(-9), "the task killed its worker");
    }
    // The broker gives up on the task when it would hand it out again, that is when a
    // worker asks for work: start one that survives.
    let survivor = common::start_worker(&server, "lost", 1, ACK_WAIT);
    let outcome = handle.wait_timeout(common::PATIENCE).expect("the broker gives up and says so");
    let e = outcome.result.unwrap_err();
    assert_eq!(e.error, RemoteError::Lost { deliveries: 2 });
    assert!(e.to_string().contains("kill_my_worker"), "{e}");
    assert_eq!(client.stats().lost, 1);

    // The pool goes on, and the lost task did not come back to poison it.
    let o = client.submit(RawTask::new(square, &5u64).unwrap()).unwrap().wait_timeout(common::PATIENCE).unwrap();
    assert_eq!(o.decode::<u64>().unwrap(), 25);
    assert_eq!(o.ran_on.map(|r| r.worker_pid), Some(survivor.pid()));
}
