//! A task that panics, crashes its process, runs past its time limit or gets an argument
//! of the wrong type costs only itself: the caller gets a clear error naming the task,
//! and the same worker goes on running the next task.

use std::time::Duration;

use multiproc_nats::testing::NatsServer;
use multiproc_nats::{RawTask, RemoteError};

mod common;

multiproc_nats::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

fn misbehave(how: String) -> u64 {
    match how.as_str() {
        "panic" => panic!("task asked to panic"),
        "abort" => std::process::abort(),
        "exit" => std::process::exit(5),
        _ => {
            std::thread::sleep(Duration::from_secs(3600));
            0
        }
    }
}

const ACK_WAIT: Duration = Duration::from_secs(30);

#[test]
fn each_failure_costs_its_task_only() {
    let Some(server) = NatsServer::start("faults") else { return };
    let worker = common::start_worker(&server, "faults", 1, ACK_WAIT);
    let client = common::client(&server, "faults", ACK_WAIT);
    let run = |task: RawTask| client.submit(task).unwrap().wait_timeout(common::PATIENCE).expect("an outcome comes");
    let check_alive = || assert_eq!(run(RawTask::new(square, &7).unwrap()).decode::<u64>().unwrap(), 49);

    let o = run(RawTask::new(misbehave, &"panic".to_string()).unwrap());
    let e = o.result.clone().unwrap_err();
    match &e.error {
        RemoteError::Panicked { message, location, .. } => {
            assert_eq!(message, "task asked to panic");
            assert!(location.as_deref().is_some_and(|l| l.contains("cluster_task_faults.rs")), "{e}");
        }
        other => panic!("unexpected: {other}"),
    }
    assert!(e.to_string().contains("misbehave"), "the message names the task: {e}");
    check_alive();

    let o = run(RawTask::new(misbehave, &"abort".to_string()).unwrap());
    let e = o.result.clone().unwrap_err();
    match &e.error {
        RemoteError::WorkerDied { worker_pid, pid, exitcode, .. } => {
            assert_eq!(*worker_pid, worker.pid());
            assert_eq!(Some(*pid), o.ran_on.as_ref().and_then(|r| r.process_pid));
            assert_eq!(*exitcode, -6);
        }
        other => panic!("unexpected: {other}"),
    }
    assert!(e.to_string().contains("SIGABRT"), "{e}");
    check_alive();

    let o = run(RawTask::new(misbehave, &"exit".to_string()).unwrap());
    assert!(matches!(o.result.unwrap_err().error, RemoteError::WorkerDied { exitcode: 5, .. }));
    check_alive();

    let o = run(RawTask::new(misbehave, &"hang".to_string()).unwrap().timeout(Duration::from_millis(300)));
    let e = o.result.unwrap_err();
    assert!(matches!(e.error, RemoteError::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("timed out"), "{e}");
    check_alive();

    // An argument that is not what the function takes: a codec error naming the type.
    let mut wrong = Vec::new();
    multiproc::remote::encode_value(&u64::MAX, &mut wrong).unwrap();
    let task = RawTask::from_code(multiproc::remote::task_code(misbehave), wrong);
    let e = run(task).result.unwrap_err();
    assert!(matches!(e.error, RemoteError::Codec { .. }) && e.to_string().contains("String"), "{e}");
    check_alive();

    assert_eq!(client.stats().duplicates, 0);
}

/// An argument over the broker's message limit (1 MiB by default) is no fault: it waits in
/// the pool's object store, with no worker yet, and arrives whole when one comes. (It used
/// to fail as `TooLarge` before leaving.)
#[test]
fn an_argument_over_the_brokers_limit_waits_for_a_worker_and_arrives() {
    let Some(server) = NatsServer::start("too-large") else { return };
    let client = common::client(&server, "large", ACK_WAIT);
    fn length(v: Vec<u8>) -> usize {
        v.len()
    }
    let handle = client.submit(RawTask::new(length, &vec![7u8; 2 << 20]).unwrap()).unwrap();
    let _worker = common::start_worker(&server, "large", 1, ACK_WAIT);
    let o = handle.wait_timeout(common::PATIENCE).expect("an outcome comes");
    assert_eq!(o.decode::<usize>().unwrap(), 2 << 20);
}
