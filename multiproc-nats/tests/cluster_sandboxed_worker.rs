//! A cluster worker whose local pool is sandboxed: a task's `exec` and its network socket
//! are denied, the client receives an error naming the rule, the worker goes on, and its
//! heartbeat says what is in effect.
#![cfg(feature = "sandbox")]

use std::time::Duration;

use multiproc::{Process, Sandbox};
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, RawTask, RemoteError, WorkerConfig};

mod common;

multiproc_nats::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

/// Runs `/bin/sh`, which the sandbox forbids.
fn run_a_shell(_: ()) -> String {
    std::os::unix::process::CommandExt::exec(&mut std::process::Command::new("/bin/sh")).to_string()
}

/// Connects to `addr` (the broker, a real listener of the parent's machine).
fn connect(addr: String) -> String {
    match std::net::TcpStream::connect(addr) {
        Ok(_) => "connected".into(),
        Err(e) => e.to_string(),
    }
}

const ACK_WAIT: Duration = Duration::from_secs(30);

/// The worker process: serves with a sandboxed local pool of one process.
fn sandboxed_worker((args, sandbox): (common::WorkerArgs, Sandbox)) {
    let (url, pool, processes, ack_wait_ms) = args;
    let config = WorkerConfig::new(BrokerConfig::parse(&url).unwrap())
        .queue(common::queue(&pool, Duration::from_millis(ack_wait_ms)))
        .processes(processes)
        .sandbox(sandbox);
    if let Err(e) = multiproc_nats::serve(config) {
        eprintln!("test worker: {e}");
        std::process::exit(3);
    }
}

#[test]
fn a_sandboxed_worker_denies_exec_and_connect_naming_the_rule_and_goes_on() {
    if !Sandbox::support().seccomp {
        eprintln!("skipped: no seccomp filters in this kernel");
        return;
    }
    let Some(server) = NatsServer::start("sandboxed") else { return };
    let sandbox = Sandbox::new().no_exec().no_network();
    let args: common::WorkerArgs = (server.url(), "sandboxed".into(), 1, ACK_WAIT.as_millis() as u64);
    let mut p = Process::new(sandboxed_worker, (args, sandbox)).name("worker-sandboxed").daemon(true);
    p.start().expect("a worker process starts");
    let worker = common::Worker(p);
    let client = common::client(&server, "sandboxed", ACK_WAIT);
    let run = |task: RawTask| client.submit(task).unwrap().wait_timeout(common::PATIENCE).expect("an outcome comes");
    let check_alive = || assert_eq!(run(RawTask::new(square, &7).unwrap()).decode::<u64>().unwrap(), 49);
    check_alive();

    let denied = |task: RawTask, rule: &str| {
        let o = run(task);
        let e = o.result.clone().unwrap_err();
        assert!(matches!(e.error, RemoteError::WorkerDied { .. }), "{e}");
        assert!(e.to_string().contains(rule), "the error names the rule `{rule}`: {e}");
        assert_eq!(o.ran_on.map(|r| r.worker_pid), Some(worker.pid()), "the sandboxed worker ran it");
    };
    denied(RawTask::new(run_a_shell, &()).unwrap(), "sandbox: `execve` denied (no exec)");
    check_alive();
    let broker = server.url().trim_start_matches("nats://").to_string();
    denied(RawTask::new(connect, &broker).unwrap(), "sandbox: `socket` denied (no network)");
    check_alive();

    // Through a cluster `Pool`: the same `TaskError` a local sandboxed pool gives.
    let pool = common::cluster_pool(&server, "sandboxed", ACK_WAIT, 1);
    match pool.apply(run_a_shell, ()) {
        Err(e @ multiproc::TaskError::WorkerDied { .. }) => {
            assert!(e.to_string().contains("sandbox: `execve` denied (no exec)"), "{e}");
        }
        other => panic!("expected a denied exec, got {other:?}"),
    }
    assert_eq!(pool.apply(square, 9).unwrap(), 81);

    // The heartbeat says what is in effect.
    let started = std::time::Instant::now();
    let status = loop {
        let status = client.status().unwrap();
        if status.workers.iter().any(|w| w.pid == worker.pid() && w.isolation.is_some()) {
            break status;
        }
        assert!(started.elapsed() < common::PATIENCE, "no heartbeat of the worker: {status}");
        std::thread::sleep(Duration::from_millis(10));
    };
    let w = status.workers.iter().find(|w| w.pid == worker.pid()).unwrap();
    let isolation = w.isolation.as_deref().unwrap();
    assert!(isolation.contains("seccomp: no network, no exec"), "{isolation}");
    assert!(isolation.starts_with("containment: "), "{isolation}");
    assert!(status.to_string().contains(isolation), "{status}");
}
