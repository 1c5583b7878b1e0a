//! A worker SIGKILLed in the middle of a task whose argument and result are both too
//! large for a broker message: the broker hands the task to another worker, which reads
//! the argument from the object store again (it is deleted only once the task settles),
//! and the caller gets the large result exact, once; nothing is left in the store.

use std::io::{Read, Write};
use std::time::Duration;

use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, QueueConfig};

mod common;

multiproc_nats::test_init!();

/// Short, so the dead worker's task comes back quickly.
const ACK_WAIT: Duration = Duration::from_secs(1);

/// 3 MiB: three times the broker's limit.
const LARGE: usize = 3 << 20;

/// Reports this worker's pid at the rendezvous, waits for the test's word, then gives
/// the bytes back reversed (as large a result as the argument).
fn reversed_on_word((path, mut data): (String, Vec<u8>)) -> Vec<u8> {
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    writeln!(s, "{}", common::worker_of_this_task()).unwrap();
    let mut go = [0u8; 1];
    let _ = s.read(&mut go);
    data.reverse();
    data
}

fn objects_left(server: &NatsServer, queue: &QueueConfig) -> (u64, u64) {
    let status = multiproc_nats::status(&BrokerConfig::parse(&server.url()).unwrap(), queue).unwrap();
    (status.objects, status.object_bytes)
}

#[test]
fn a_killed_workers_large_task_finishes_elsewhere_exact_and_leaves_nothing() {
    let Some(server) = NatsServer::start("large-redelivered") else { return };
    let rendezvous = common::Rendezvous::new("large-redelivered");
    let first = common::start_worker(&server, "bigredo", 1, ACK_WAIT);
    let pool = common::cluster_pool(&server, "bigredo", ACK_WAIT, 1);

    let data: Vec<u8> = (0..LARGE).map(|i| (i * 7 % 251) as u8).collect();
    let handle = pool.apply_async(reversed_on_word, (rendezvous.path.display().to_string(), data.clone()));
    let (_held, who) = rendezvous.accept();
    assert_eq!(who, first.pid().to_string(), "the first worker runs the task");

    first.kill();
    let second = common::start_worker(&server, "bigredo", 1, ACK_WAIT);
    let (mut conn, who) = rendezvous.accept();
    assert_eq!(who, second.pid().to_string(), "the task came back, to the second worker");
    conn.write_all(b"g").unwrap();

    let mut want = data;
    want.reverse();
    assert!(handle.get().unwrap() == want, "the large result came back exact");
    pool.close();
    pool.join().unwrap();
    assert_eq!(objects_left(&server, &common::queue("bigredo", ACK_WAIT)), (0, 0), "nothing left behind");
}
