//! A client that dies leaves its queued tasks behind; once its lease lapses, workers
//! drop them unrun (and they leave the queue), so they neither run for nobody nor hold
//! up the work of live clients.

use std::time::{Duration, Instant};

use multiproc::Process;
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, Client, ClientConfig, QueueConfig, RawTask};

mod common;

multiproc_nats::test_init!();

const LEASE: Duration = Duration::from_secs(1);
const TASKS: u64 = 20;

fn queue() -> QueueConfig {
    common::queue("gone", Duration::from_secs(30)).client_lease(LEASE)
}

/// Leaves a mark: the task ran.
fn mark(path: String) {
    std::fs::write(path, b"ran").unwrap();
}

fn square(n: u64) -> u64 {
    n * n
}

/// A client that queues its tasks, writes down its id, and dies without a word.
fn doomed_client((url, dir): (String, String)) {
    let client = Client::connect(ClientConfig::new(BrokerConfig::parse(&url).unwrap()).queue(queue())).unwrap();
    for i in 0..TASKS {
        client.submit(RawTask::new(mark, &format!("{dir}/task-{i}")).unwrap()).unwrap();
    }
    let started = Instant::now();
    while client.status().unwrap().tasks < TASKS {
        assert!(started.elapsed() < common::PATIENCE, "the tasks never reached the queue");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(format!("{dir}/client-id"), client.id()).unwrap();
    std::process::abort();
}

/// Waits until the lease of client `id` has lapsed (a hang guard panics after PATIENCE).
fn wait_until_lapsed(server: &NatsServer, id: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let nats = async_nats::connect(server.url()).await.unwrap();
        let leases = async_nats::jetstream::new(nats).get_stream("MPROC_gone_leases").await.unwrap();
        let started = Instant::now();
        while leases.get_last_raw_message_by_subject(&format!("mproc.gone.leases.{id}")).await.is_ok() {
            assert!(started.elapsed() < common::PATIENCE, "the lease never lapsed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn a_dead_clients_tasks_are_dropped_unrun() {
    let Some(server) = NatsServer::start("client-gone") else { return };
    let dir = std::env::temp_dir().join(format!("mpn-client-gone-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut doomed = Process::new(doomed_client, (server.url(), dir.display().to_string()));
    doomed.start().unwrap();
    doomed.join().unwrap();
    assert_eq!(doomed.exitcode(), Some(-6), "the client died (SIGABRT)");
    let id = std::fs::read_to_string(dir.join("client-id")).unwrap();
    wait_until_lapsed(&server, &id);

    let _worker = common::start_worker(&server, "gone", 1, Duration::from_secs(30));
    let live = Client::connect(ClientConfig::new(BrokerConfig::parse(&server.url()).unwrap()).queue(queue())).unwrap();
    let o = live.submit(RawTask::new(square, &7u64).unwrap()).unwrap().wait_timeout(common::PATIENCE).unwrap();
    assert_eq!(o.decode::<u64>().unwrap(), 49, "a live client's task runs");

    let ran: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(ran, [std::ffi::OsString::from("client-id")], "none of the dead client's tasks ran");
    let started = Instant::now();
    while live.status().unwrap().tasks > 0 {
        assert!(started.elapsed() < common::PATIENCE, "the dropped tasks never left the queue");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
