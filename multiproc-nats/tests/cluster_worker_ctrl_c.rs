//! Ctrl-C in the terminal of a worker started by `serve` reaches its whole process group:
//! the worker, which drains, and its local pool's processes, which ignore it. The task
//! they run finishes and is delivered, and the worker exits cleanly.

use std::io::Write;
use std::time::Duration;

use multiproc::{Contain, Process};
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, RawTask, WorkerConfig};
use rustix::process::{Pid, Signal, getpgid, kill_process_group, setsid};

mod common;

multiproc_nats::test_init!();

const POOL: &str = "ctrl-c";
const ACK_WAIT: Duration = Duration::from_secs(30);

/// A worker as started from a shell: it leads its own process group, and its local pool's
/// processes stay in it (no containment, which could give each a group of its own).
fn worker_in_its_own_group(url: String) {
    setsid().unwrap();
    let config = WorkerConfig::new(BrokerConfig::parse(&url).unwrap())
        .queue(common::queue(POOL, ACK_WAIT))
        .processes(1)
        .contain(Contain::Off);
    if let Err(e) = multiproc_nats::serve(config) {
        eprintln!("test worker: {e}");
        std::process::exit(3);
    }
}

#[test]
fn ctrl_c_drains_the_worker_and_its_running_task_finishes() {
    let Some(server) = NatsServer::start("worker-ctrl-c") else { return };
    let client = common::client(&server, POOL, ACK_WAIT);
    let mut p = Process::new(worker_in_its_own_group, server.url()).contain(Contain::Off).daemon(true);
    p.start().unwrap();
    let worker = common::Worker(p);
    let rendezvous = common::Rendezvous::new("ctrl-c");
    let path = rendezvous.path.display().to_string();
    let running = client.submit(RawTask::new(common::report_and_wait, &path).unwrap()).unwrap();
    let mut gate = rendezvous.accept().0;

    let leader = Pid::from_raw(worker.pid() as i32).unwrap();
    assert_eq!(getpgid(Some(leader)).unwrap(), leader, "the worker leads its own group");
    kill_process_group(leader, Signal::INT).unwrap();
    // The whole group has the signal once `kill` returned; the task is told to finish.
    gate.write_all(b"g").unwrap();
    let o = running.wait_timeout(common::PATIENCE).expect("the running task finishes (hang guard)");
    assert_eq!(o.decode::<u32>().unwrap(), worker.pid(), "it finished on the interrupted worker");
    worker.0.join().unwrap();
    assert_eq!(worker.0.exitcode(), Some(0), "Ctrl-C drained the worker, which exited cleanly");
}
