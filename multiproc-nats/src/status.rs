//! The pool's queue as the broker sees it, for an operator: how many tasks wait, how
//! many are in workers' hands, how many were handed out again, per build.

use std::fmt;

use async_nats::jetstream;
use futures_util::StreamExt;

use crate::broker;
use crate::config::{BrokerConfig, QueueConfig};
use crate::error::ClusterError;

/// What a worker has done so far.
///
/// ```no_run
/// use multiproc_nats::{PoolRunner, WorkerConfig, start_worker};
/// use std::sync::Arc;
///
/// multiproc::init();
/// let worker = start_worker(WorkerConfig::from_env()?, Arc::new(PoolRunner::start(4)?))?;
/// let stats = worker.stats();
/// println!("{} received, {} completed, {} orphaned", stats.received, stats.completed, stats.orphaned);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Tasks received from the queue.
    pub received: u64,
    /// Of those, tasks that had been handed to some worker before.
    pub redelivered: u64,
    /// Tasks whose result was stored for their client, then acked.
    pub completed: u64,
    /// Tasks refused without running (another build, another protocol, unreadable).
    pub refused: u64,
    /// Tasks whose result the broker would not store in time (it was away longer than
    /// the worker's result patience): put back on the queue, for another try.
    pub abandoned: u64,
    /// In-progress acks sent for running tasks.
    pub progress_acks: u64,
    /// Tasks dropped unrun because their client's lease had lapsed (the client is gone).
    pub orphaned: u64,
    /// Items of redelivered tasks not run again: their results were stored before
    /// (by the worker that had the task, before it died).
    pub items_skipped: u64,
    /// Tasks whose large arguments waited to be read until those held were let go,
    /// under the worker's [`max_args_bytes`](crate::WorkerConfig::max_args_bytes).
    pub args_waited: u64,
}

/// The pool's queue now: see [`Client::status`](crate::Client::status).
///
/// ```no_run
/// use multiproc_nats::{BrokerConfig, QueueConfig, status};
///
/// let queue = status(&BrokerConfig::from_env()?, &QueueConfig::from_env()?)?; // creates nothing
/// println!("{queue}"); // a few lines for people
/// println!("{} tasks on pool {}, {} live workers", queue.tasks, queue.pool, queue.workers.len());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStatus {
    /// The pool's name.
    pub pool: String,
    /// On how many servers the queue is kept.
    pub replicas: usize,
    /// Tasks on the queue: waiting, or in a worker's hands and not yet acked.
    pub tasks: u64,
    /// The builds that have a consumer on the queue (their workers or clients connected
    /// once), by fingerprint.
    pub builds: Vec<BuildStatus>,
    /// The workers heard from within the client lease, by host and pid.
    pub workers: Vec<LiveWorker>,
    /// Results stored for their clients and not yet taken (a client away, or gone: those
    /// go after the result TTL).
    pub results_waiting: u64,
    /// Objects in the pool's object store: arguments and results too large for a message,
    /// on their way (each is deleted by its reader; one whose reader vanished goes after
    /// the result TTL). None when nothing large is in flight.
    pub objects: u64,
    /// The size of those objects, in bytes.
    pub object_bytes: u64,
}

/// A worker as its last heartbeat (every third of `ack_wait`) told it.
///
/// ```no_run
/// use multiproc_nats::{BrokerConfig, QueueConfig, status};
///
/// let queue = status(&BrokerConfig::from_env()?, &QueueConfig::from_env()?)?; // creates nothing
/// for w in &queue.workers {
///     println!("{}:{} runs {} of {} slots, {} tasks done", w.host, w.pid, w.running, w.slots, w.stats.completed);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct LiveWorker {
    /// Its host.
    pub host: String,
    /// Its pid.
    pub pid: u32,
    /// Its build's fingerprint.
    pub build: u64,
    /// How many task messages it runs at once.
    pub slots: usize,
    /// How many it was running.
    pub running: usize,
    /// What it had done.
    pub stats: WorkerStats,
    /// When it said so, in milliseconds since the Unix epoch, by its own clock.
    pub at_unix_ms: u64,
    /// Whether it is draining: told to stop (SIGTERM, Ctrl-C, `WorkerHandle::stop`), it
    /// takes no new task and finishes those it holds.
    #[serde(default)]
    pub draining: bool,
    /// What isolates its tasks' processes, as its runner says
    /// ([`TaskRunner::isolation`](crate::TaskRunner::isolation)): for a [`PoolRunner`](crate::PoolRunner),
    /// its local pool's containment and sandbox as they take effect on its kernel
    /// ("containment: cgroup v2 subtree (cgroup.kill); sandbox: no_new_privs; seccomp: no
    /// exec"). `None` from a worker that does not say (an older one).
    #[serde(default)]
    pub isolation: Option<String>,
}

impl LiveWorker {
    /// The subject token naming this worker: `host-pid`, with what a subject cannot
    /// hold replaced by `_`.
    pub(crate) fn name(&self) -> String {
        let host: String =
            self.host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        format!("{host}-{}", self.pid)
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// One build's share of the queue.
///
/// ```no_run
/// use multiproc_nats::{BrokerConfig, QueueConfig, status};
///
/// let queue = status(&BrokerConfig::from_env()?, &QueueConfig::from_env()?)?; // creates nothing
/// for build in &queue.builds {
///     println!("build {:016x}: {} waiting, {} in flight", build.build, build.waiting, build.in_flight);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildStatus {
    /// The build's fingerprint.
    pub build: u64,
    /// Tasks waiting for a worker of this build.
    pub waiting: u64,
    /// Tasks in this build's workers' hands, not yet acked.
    pub in_flight: u64,
    /// Tasks handed out more than once (their worker vanished, or was too slow to ack).
    pub redelivered: u64,
    /// Open pull requests: a sign of live, idle workers of this build.
    pub pull_requests: u64,
}

impl fmt::Display for QueueStatus {
    /// A few lines for people: the queue, then one line per build.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pool {}: {} tasks on the queue, {} results waiting for their clients ({} replicas)",
            self.pool, self.tasks, self.results_waiting, self.replicas
        )?;
        if self.objects > 0 {
            writeln!(f, "  {} large payloads in the object store ({} bytes)", self.objects, self.object_bytes)?;
        }
        for b in &self.builds {
            writeln!(
                f,
                "  build {:016x}: {} waiting, {} in flight, {} redelivered, {} pull requests open",
                b.build, b.waiting, b.in_flight, b.redelivered, b.pull_requests
            )?;
        }
        let now = unix_ms();
        for w in &self.workers {
            let ago = now.saturating_sub(w.at_unix_ms) as f64 / 1000.0;
            // Said only when it happened: most workers never take over a task half done.
            let skipped = match w.stats.items_skipped {
                0 => String::new(),
                n => format!(", {n} items not run again (stored before a redelivery)"),
            };
            let waited = match w.stats.args_waited {
                0 => String::new(),
                n => format!(", {n} waited for room for their arguments"),
            };
            writeln!(
                f,
                "  worker {}:{} (build {:016x}){}: {}/{} slots busy, {} tasks completed, {} refused, {} orphaned{skipped}{waited}, seen {ago:.1}s ago",
                w.host,
                w.pid,
                w.build,
                if w.draining { " draining" } else { "" },
                w.running,
                w.slots,
                w.stats.completed,
                w.stats.refused,
                w.stats.orphaned
            )?;
            if let Some(isolation) = &w.isolation {
                writeln!(f, "    its tasks' processes: {isolation}")?;
            }
        }
        Ok(())
    }
}

/// The status of the pool's queue on `broker`, read without a client: nothing is
/// created (no stream, no consumer), so an operator's look leaves no trace. Fails when
/// the queue does not exist.
///
/// ```no_run
/// use multiproc_nats::{BrokerConfig, QueueConfig};
///
/// let s = multiproc_nats::status(&BrokerConfig::from_env()?, &QueueConfig::from_env()?)?;
/// println!("{s}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn status(broker: &BrokerConfig, queue: &QueueConfig) -> Result<QueueStatus, ClusterError> {
    crate::blocking::outside_runtime(|| status_here(broker, queue))
}

fn status_here(broker: &BrokerConfig, queue: &QueueConfig) -> Result<QueueStatus, ClusterError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let nats = broker::connect(broker, "multiproc-nats status".into(), |_| {}).await?;
        let js = jetstream::new(nats);
        let mut stream = js.get_stream(queue.stream()).await.map_err(|e| ClusterError::Setup {
            what: format!("the task stream `{}`", queue.stream()),
            message: format!("{e} (no client or worker of pool `{}` has connected yet?)", queue.pool_name()),
        })?;
        queue_status(&js, &mut stream, queue).await
    })
}

/// Reads the queue's status from the broker.
pub(crate) async fn queue_status(
    js: &jetstream::Context,
    stream: &mut jetstream::stream::Stream,
    queue: &QueueConfig,
) -> Result<QueueStatus, ClusterError> {
    let failed = |e: &dyn fmt::Display| ClusterError::Setup {
        what: format!("the status of `{}`", queue.stream()),
        message: e.to_string(),
    };
    let info = stream.info().await.map_err(|e| failed(&e))?.clone();
    let mut builds = Vec::new();
    let mut consumers = stream.consumers();
    while let Some(consumer) = consumers.next().await {
        let c = consumer.map_err(|e| failed(&e))?;
        let Some(build) = build_of(&c.name) else { continue };
        builds.push(BuildStatus {
            build,
            waiting: c.num_pending,
            in_flight: c.num_ack_pending as u64,
            redelivered: c.num_redelivered as u64,
            pull_requests: c.num_waiting as u64,
        });
    }
    builds.sort_by_key(|b| b.build);
    let (objects, object_bytes) = crate::objects::stored(js, queue).await;
    Ok(QueueStatus {
        pool: queue.pool_name().to_string(),
        replicas: info.config.num_replicas.max(1),
        tasks: info.state.messages,
        builds,
        workers: live_workers(js, queue).await,
        results_waiting: results_waiting(js, queue).await,
        objects,
        object_bytes,
    })
}

/// Results stored and not yet taken (none when no result stream exists).
async fn results_waiting(js: &jetstream::Context, queue: &QueueConfig) -> u64 {
    let Ok(results) = js.get_stream(queue.result_stream()).await else { return 0 };
    results.get_info().await.map(|i| i.state.messages).unwrap_or(0)
}

/// The workers' latest heartbeats (none when no worker ever started).
async fn live_workers(js: &jetstream::Context, queue: &QueueConfig) -> Vec<LiveWorker> {
    let Ok(presence) = js.get_stream(queue.presence_stream()).await else { return Vec::new() };
    let Ok(mut subjects) = presence.info_with_subjects(queue.presence_subject("*")).await else { return Vec::new() };
    let mut names = Vec::new();
    while let Some(Ok((subject, _))) = subjects.next().await {
        names.push(subject);
    }
    let mut workers = Vec::new();
    for subject in names {
        if let Ok(msg) = presence.get_last_raw_message_by_subject(&subject).await
            && let Ok(w) = serde_json::from_slice::<LiveWorker>(&msg.payload)
        {
            workers.push(w);
        }
    }
    workers.sort_by(|a, b| (&a.host, a.pid).cmp(&(&b.host, b.pid)));
    workers
}

/// The build a consumer serves, from its name (`workers-<16 hex digits>`).
fn build_of(consumer: &str) -> Option<u64> {
    let hex = consumer.strip_prefix("workers-")?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_named_by_host_and_pid_in_one_token() {
        let w = LiveWorker {
            host: "node1.example.com".into(),
            pid: 42,
            build: 1,
            slots: 2,
            running: 1,
            stats: WorkerStats::default(),
            draining: false,
            at_unix_ms: 0,
            isolation: None,
        };
        assert_eq!(w.name(), "node1_example_com-42");
    }

    #[test]
    fn consumers_name_their_build() {
        let q = QueueConfig::default();
        assert_eq!(build_of(&q.consumer(0xab)), Some(0xab));
        assert_eq!(build_of("workers"), None);
        assert_eq!(build_of("workers-xyz"), None);
    }

    #[test]
    fn the_status_reads_as_lines() {
        let s = QueueStatus {
            pool: "p".into(),
            replicas: 3,
            tasks: 5,
            builds: vec![BuildStatus { build: 0xab, waiting: 4, in_flight: 1, redelivered: 0, pull_requests: 2 }],
            workers: vec![],
            results_waiting: 7,
            objects: 0,
            object_bytes: 0,
        };
        assert_eq!(
            s.to_string(),
            "pool p: 5 tasks on the queue, 7 results waiting for their clients (3 replicas)\n  build 00000000000000ab: 4 waiting, 1 in flight, 0 redelivered, 2 pull requests open\n"
        );
        let s = QueueStatus { objects: 2, object_bytes: 100 << 20, ..s };
        assert!(s.to_string().contains("\n  2 large payloads in the object store (104857600 bytes)\n"), "{s}");
    }
}
