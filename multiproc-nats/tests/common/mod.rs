//! What the cluster tests share: worker processes and clients on a test's own broker.
#![allow(dead_code)] // each test file uses its own part

use std::time::Duration;

use multiproc::Process;
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, Client, ClientConfig, QueueConfig, WorkerConfig};

/// How a worker process is set up: broker URL, pool, slots, ack wait in milliseconds.
pub type WorkerArgs = (String, String, usize, u64);

/// The queue settings of a test pool.
pub fn queue(pool: &str, ack_wait: Duration) -> QueueConfig {
    QueueConfig::default().pool(pool).unwrap().ack_wait(ack_wait).max_deliver(4)
}

/// A worker process's body: serve until killed.
pub fn worker_main((url, pool, slots, ack_wait_ms): WorkerArgs) {
    let config = WorkerConfig::new(BrokerConfig::parse(&url).unwrap())
        .queue(queue(&pool, Duration::from_millis(ack_wait_ms)))
        .slots(slots);
    if let Err(e) = multiproc_nats::serve(config) {
        eprintln!("test worker: {e}");
        std::process::exit(3);
    }
}

/// A worker process, killed (SIGKILL) and reaped at drop; it dies with the test too.
pub struct Worker(pub Process);

impl Worker {
    /// The worker's pid.
    pub fn pid(&self) -> u32 {
        self.0.pid().expect("a started worker has a pid")
    }

    /// Kills the worker with SIGKILL and waits for it to be gone.
    pub fn kill(&self) {
        let _ = self.0.kill();
        let _ = self.0.join();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a worker process (daemonic: the test's exit does not wait for it).
pub fn start_worker(server: &NatsServer, pool: &str, slots: usize, ack_wait: Duration) -> Worker {
    let args: WorkerArgs = (server.url(), pool.to_string(), slots, ack_wait.as_millis() as u64);
    let mut p = Process::new(worker_main, args).name(format!("worker-{pool}")).daemon(true);
    p.start().expect("a worker process starts");
    Worker(p)
}

/// A client of the test pool.
pub fn client(server: &NatsServer, pool: &str, ack_wait: Duration) -> Client {
    let config = ClientConfig::new(BrokerConfig::parse(&server.url()).unwrap()).queue(queue(pool, ack_wait));
    Client::connect(config).expect("the client connects")
}

/// Long enough that only a broken test waits this long for an outcome (a hang guard,
/// never a measurement).
pub const PATIENCE: Duration = Duration::from_secs(120);
