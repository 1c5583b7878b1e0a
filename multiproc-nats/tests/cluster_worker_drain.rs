//! SIGTERM drains a worker: it says so in the pool's status, takes no new task, finishes
//! the tasks it runs, stores their results and acks them, then exits with code 0. The
//! tasks it never took wait on the queue for another worker: nothing is lost or run twice.

use std::io::Write;
use std::time::{Duration, Instant};

use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, RawTask};

mod common;

multiproc_nats::test_init!();

const POOL: &str = "drain";
const ACK_WAIT: Duration = Duration::from_secs(30);

fn square(n: u64) -> u64 {
    n * n
}

#[test]
fn sigterm_finishes_the_running_tasks_and_leaves_the_rest_queued() {
    let Some(server) = NatsServer::start("worker-drain") else { return };
    let client = common::client(&server, POOL, ACK_WAIT);
    let worker = common::start_worker(&server, POOL, 2, ACK_WAIT);
    let rendezvous = common::Rendezvous::new("drain");
    let path = rendezvous.path.display().to_string();
    let running: Vec<_> =
        (0..2).map(|_| client.submit(RawTask::new(common::report_and_wait, &path).unwrap()).unwrap()).collect();
    let mut gates: Vec<_> = (0..2).map(|_| rendezvous.accept().0).collect();

    worker.0.terminate().unwrap();
    let direct = BrokerConfig::parse(&server.url()).unwrap();
    let queue = common::queue(POOL, ACK_WAIT);
    let started = Instant::now();
    while !multiproc_nats::status(&direct, &queue).unwrap().workers.iter().any(|w| w.pid == worker.pid() && w.draining)
    {
        assert!(started.elapsed() < common::PATIENCE, "the worker never said it drains");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Submitted once it drains: not for it.
    let queued: Vec<_> = (0..3u64).map(|n| (n, client.submit(RawTask::new(square, &n).unwrap()).unwrap())).collect();
    for gate in &mut gates {
        gate.write_all(b"g").unwrap();
    }
    for h in running {
        let o = h.wait_timeout(common::PATIENCE).expect("a running task finishes (hang guard)");
        assert_eq!(o.decode::<u32>().unwrap(), worker.pid(), "it finished on the draining worker");
        assert_eq!(o.delivery, 1, "and ran once");
    }
    worker.0.join().unwrap();
    assert_eq!(worker.0.exitcode(), Some(0), "a drained worker exits cleanly");
    assert!(queued.iter().all(|(_, h)| !h.is_ready()), "the draining worker took no new task");

    let second = common::start_worker(&server, POOL, 2, ACK_WAIT);
    for (n, h) in queued {
        let o = h.wait_timeout(common::PATIENCE).expect("the queued tasks run on another worker (hang guard)");
        assert_eq!(o.decode::<u64>().unwrap(), square(n));
        assert_eq!(o.ran_on.unwrap().worker_pid, second.pid());
    }
    let stats = client.stats();
    assert_eq!((stats.finished, stats.duplicates, stats.lost), (5, 0, 0), "{stats:?}");
}
