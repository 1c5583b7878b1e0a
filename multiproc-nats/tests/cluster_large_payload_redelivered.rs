//! A worker SIGKILLed in the middle of a task whose argument and result are both too
//! large for a broker message: the broker hands the task to another worker, which reads
//! the argument from the object store again (it is deleted only once the task settles),
//! and the caller gets the large result exact, once; nothing is left in the store. A
//! worker stalled past `ack_wait` that finishes after all stores its large result too
//! late: the client drops it, and deletes its object unread.

use std::io::{Read, Write};
use std::time::Duration;

use futures_util::StreamExt;
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, ClusterPool, QueueConfig};
use rustix::process::{Pid, Signal, kill_process};

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

#[test]
fn a_stalled_workers_late_large_result_is_dropped_and_its_object_deleted() {
    let Some(server) = NatsServer::start("large-late") else { return };
    let rendezvous = common::Rendezvous::new("large-late");
    let first = common::start_worker(&server, "biglate", 1, ACK_WAIT);
    let pool = common::cluster_pool(&server, "biglate", ACK_WAIT, 1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut bucket = rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
        js.get_object_store("MPROC_biglate_objects").await.unwrap().watch().await.unwrap()
    });

    let data = vec![5u8; LARGE];
    let handle = pool.apply_async(reversed_on_word, (rendezvous.path.display().to_string(), data.clone()));
    let (mut late, who) = rendezvous.accept();
    assert_eq!(who, first.pid().to_string());
    // The first worker stalls (its task's process goes on, waiting): past ack_wait, the
    // broker hands the task to the second, which finishes it.
    let stalled = Pid::from_raw(first.pid() as i32).unwrap();
    kill_process(stalled, Signal::STOP).unwrap();
    let second = common::start_worker(&server, "biglate", 1, ACK_WAIT);
    let (mut conn, who) = rendezvous.accept();
    assert_eq!(who, second.pid().to_string());
    conn.write_all(b"g").unwrap();
    assert_eq!(handle.get().unwrap(), data, "the second worker's result");

    // The first wakes up and finishes too: its result (delivery 1) is stored, found a
    // duplicate by the client, and its object deleted unread.
    kill_process(stalled, Signal::CONT).unwrap();
    late.write_all(b"g").unwrap();
    let deleted = rt.block_on(async {
        let late_result = |name: &str| name.ends_with("-d1-r0");
        let stored = async {
            while let Some(Ok(info)) = bucket.next().await {
                if late_result(&info.name) && info.deleted {
                    return true;
                }
            }
            false
        };
        tokio::time::timeout(common::PATIENCE, stored).await
    });
    assert_eq!(deleted, Ok(true), "the late result's object was deleted");
    let duplicates = ClusterPool::client_stats(&pool).unwrap().duplicates;
    assert!(duplicates >= 1, "the late result was dropped as a duplicate");
    pool.close();
    pool.join().unwrap();
    assert_eq!(objects_left(&server, &common::queue("biglate", ACK_WAIT)), (0, 0), "nothing left behind");
}
