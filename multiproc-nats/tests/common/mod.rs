//! What the cluster tests share: worker processes and clients on a test's own broker.
#![allow(dead_code)] // each test file uses its own part

use std::time::Duration;

use multiproc::{Pool, Process};
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, Client, ClientConfig, ClusterPool, QueueConfig, WorkerConfig};

/// How a worker process is set up: broker URL, pool, processes, ack wait in milliseconds.
pub type WorkerArgs = (String, String, usize, u64);

/// The queue settings of a test pool (`max_deliver` left out: a test that sets it on its
/// client has workers that take the queue's).
pub fn queue(pool: &str, ack_wait: Duration) -> QueueConfig {
    QueueConfig::default().pool(pool).unwrap().ack_wait(ack_wait)
}

/// A worker process's body: serve until killed.
pub fn worker_main((url, pool, slots, ack_wait_ms): WorkerArgs) {
    let config = WorkerConfig::new(BrokerConfig::parse(&url).unwrap())
        .queue(queue(&pool, Duration::from_millis(ack_wait_ms)))
        .processes(slots);
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

/// A cluster pool on the test pool: a `multiproc::Pool` whose tasks go to the broker.
pub fn cluster_pool(server: &NatsServer, pool: &str, ack_wait: Duration, processes: usize) -> Pool {
    let config = ClientConfig::new(BrokerConfig::parse(&server.url()).unwrap()).queue(queue(pool, ack_wait));
    ClusterPool::with_client(config).processes(processes).connect().expect("the cluster pool connects")
}

/// Where a task runs: the pid of the cluster worker whose local pool runs it (the
/// parent of the task's process).
pub fn worker_of_this_task() -> u32 {
    multiproc::parent_process().expect("a task process has its worker as parent").pid()
}

/// Long enough that only a broken test waits this long for an outcome (a hang guard,
/// never a measurement).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A Unix socket where tasks report in, so that a test can wait for "the task is
/// running now" and let it go when it chooses.
pub struct Rendezvous {
    pub path: std::path::PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl Rendezvous {
    pub fn new(tag: &str) -> Rendezvous {
        let path = std::env::temp_dir().join(format!("mpn-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        Rendezvous { path, listener }
    }

    /// Another handle on the listening socket.
    pub fn try_clone_listener(&self) -> std::os::unix::net::UnixListener {
        self.listener.try_clone().unwrap()
    }

    /// Waits for the next task to report in; returns its connection and the line it sent.
    pub fn accept(&self) -> (std::os::unix::net::UnixStream, String) {
        use std::io::BufRead;
        let listener = self.listener.try_clone().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(listener.accept());
        });
        let (stream, _) = rx.recv_timeout(PATIENCE).expect("a task reports in").unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stream.try_clone().unwrap()).read_line(&mut line).unwrap();
        (stream, line.trim().to_string())
    }
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A task body: report this worker's pid at the rendezvous, wait for the test's word,
/// return the worker's pid.
pub fn report_and_wait(path: String) -> u32 {
    use std::io::{Read, Write};
    let worker = worker_of_this_task();
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    writeln!(s, "{worker}").unwrap();
    let mut go = [0u8; 1];
    let _ = s.read(&mut go);
    worker
}

/// A worker process like [`start_worker`], on the broker (or cluster) at `url`.
pub fn start_worker_at(url: &str, pool: &str, slots: usize, ack_wait: Duration) -> Worker {
    let args: WorkerArgs = (url.to_string(), pool.to_string(), slots, ack_wait.as_millis() as u64);
    let mut p = Process::new(worker_main, args).name(format!("worker-{pool}")).daemon(true);
    p.start().expect("a worker process starts");
    Worker(p)
}

/// The name of the queue's consumer for this build's tasks: the one this binary's
/// workers share.
pub fn consumer() -> String {
    format!("workers-{:016x}", multiproc::remote::fingerprint())
}

/// `len` bytes made from `seed` (xorshift), the same on every machine: payloads a test
/// can make again to check what came back.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What the pool's object store still holds: its objects, their bytes, and the subjects
/// of its stream with messages (chunks, descriptions, deletion markers); `(0, 0, [])`
/// when nothing is left behind.
pub fn objects_left_behind(server: &NatsServer, queue: &QueueConfig) -> (u64, u64, Vec<String>) {
    use futures_util::StreamExt;
    let status = multiproc_nats::status(&BrokerConfig::parse(&server.url()).unwrap(), queue).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let subjects = rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
        let stream = js.get_stream(format!("OBJ_MPROC_{}_objects", queue.pool_name())).await.unwrap();
        let mut subjects = stream.info_with_subjects(">").await.unwrap();
        let mut left = Vec::new();
        while let Some((subject, n)) = subjects.next().await.map(Result::unwrap) {
            left.push(format!("{subject} ({n} messages)"));
        }
        left
    });
    (status.objects, status.object_bytes, subjects)
}

/// Waits until the pool's task queue is empty, for at most a minute (workers sweep what
/// they acked on their idle heartbeats); returns the tasks still on it.
pub fn wait_for_empty_queue(server: &NatsServer, pool: &str, ack_wait: Duration) -> u64 {
    let broker = BrokerConfig::parse(&server.url()).unwrap();
    let since = std::time::Instant::now();
    loop {
        let status = multiproc_nats::status(&broker, &queue(pool, ack_wait)).unwrap();
        if status.tasks == 0 || since.elapsed() > Duration::from_secs(60) {
            if status.tasks > 0 {
                eprintln!("the queue a minute on:\n{status}\n{}", stream_and_consumers(server, pool));
            }
            return status.tasks;
        }
        // The broker's state has nothing to wait on: it is asked again.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The task stream's sequences and each consumer's delivered and ack floor, for a
/// failure message.
fn stream_and_consumers(server: &NatsServer, pool: &str) -> String {
    use futures_util::StreamExt;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
        let mut stream = js.get_stream(format!("MPROC_{pool}")).await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        let mut out = format!(
            "stream: first {} last {} messages {} deleted {:?}\n",
            state.first_sequence, state.last_sequence, state.messages, state.deleted_count
        );
        let mut consumers = stream.consumers();
        while let Some(Ok(c)) = consumers.next().await {
            out += &format!(
                "consumer {}: delivered {:?} ack floor {:?} pending {} ack pending {} redelivered {}\n",
                c.name, c.delivered, c.ack_floor, c.num_pending, c.num_ack_pending, c.num_redelivered
            );
        }
        out
    })
}
