//! The worker: pulls tasks from the pool's queue, runs them on a [`TaskRunner`] (by
//! default a [`PoolRunner`]: a local `multiproc::Pool`), sends each task's results to the
//! client that submitted it, then acks the task.
//!
//! - It asks the broker for exactly as many tasks as it has free slots, so a busy worker
//!   holds little that an idle one could run.
//! - A task's results go back in as many messages as the broker's size limit needs; an
//!   item whose result alone is too large fails with `TooLarge`, the others stand.
//! - While a task runs (and while its result is being delivered) it sends an
//!   in-progress ack every third of the queue's `ack_wait`, so the broker hands the task
//!   to another worker only when this one has vanished.
//! - It acks a task only after the client confirmed its result: a worker that dies at
//!   any point loses nothing, and the client drops the duplicate a redelivery may cause.
//! - A task of another build (or protocol version) is never run: the worker logs it,
//!   reports `WrongBinary` to the client, and terminates the message (`+TERM`) so that it
//!   is not handed out again. See the crate docs for why.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::broker;
use crate::client::HEADER_ROOM;
use crate::config::{BrokerConfig, ConfigError, QueueConfig};
use crate::envelope::ItemResults;
use crate::envelope::{Outcome, PROTOCOL, RanOn, RemoteError, ResultHead, TaskAddress, TaskHead, host_name};
use crate::error::ClusterError;
use crate::runner::{PoolRunner, RunReport, Task, TaskRunner};

/// The environment variable that turns a program into a worker at
/// [`init()`](crate::init): set it to `1`.
pub const WORKER_ENV: &str = "MULTIPROC_NATS_WORKER";

/// The environment variable giving the number of processes a worker runs tasks in
/// (default: the CPU count).
pub const PROCESSES_ENV: &str = "MULTIPROC_NATS_PROCESSES";

/// How a worker connects and how much it runs at once.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub(crate) broker: BrokerConfig,
    pub(crate) queue: QueueConfig,
    pub(crate) processes: usize,
    pub(crate) pull_expiry: Duration,
    pub(crate) result_patience: Duration,
}

impl WorkerConfig {
    /// A worker of the default pool on `broker`, with one process per CPU.
    pub fn new(broker: BrokerConfig) -> WorkerConfig {
        WorkerConfig {
            broker,
            queue: QueueConfig::default(),
            processes: multiproc::cpu_count(),
            pull_expiry: Duration::from_secs(5),
            result_patience: Duration::from_secs(60),
        }
    }

    /// Everything from the environment: the broker from `MULTIPROC_NATS_URL`, the pool
    /// from `MULTIPROC_NATS_POOL`, the processes from `MULTIPROC_NATS_PROCESSES`.
    pub fn from_env() -> Result<WorkerConfig, ConfigError> {
        let mut c = WorkerConfig::new(BrokerConfig::from_env()?).queue(QueueConfig::from_env()?);
        if let Ok(s) = std::env::var(PROCESSES_ENV) {
            let n = s.trim().parse().map_err(|_| ConfigError::new(format!("{PROCESSES_ENV}={s} is not a number")))?;
            c = c.processes(n);
        }
        Ok(c)
    }

    /// Serves this pool's queue (the pool's settings apply if this worker creates it).
    pub fn queue(mut self, queue: QueueConfig) -> WorkerConfig {
        self.queue = queue;
        self
    }

    /// How many processes run tasks at once: the size of the local pool [`serve`] starts
    /// (default: the CPU count).
    pub fn processes(mut self, n: usize) -> WorkerConfig {
        self.processes = n.max(1);
        self
    }

    /// How long the worker keeps trying to hand a result to its client (which may be
    /// reconnecting) before it gives up on it and drops the task (default 60 s).
    pub fn result_patience(mut self, d: Duration) -> WorkerConfig {
        self.result_patience = d;
        self
    }
}

/// What a worker has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Tasks received from the queue.
    pub received: u64,
    /// Of those, tasks that had been handed to some worker before.
    pub redelivered: u64,
    /// Tasks whose result the client confirmed, then acked.
    pub completed: u64,
    /// Tasks refused without running (another build, another protocol, unreadable).
    pub refused: u64,
    /// Tasks whose result could not be handed to their client in time, then dropped.
    pub abandoned: u64,
    /// In-progress acks sent for running tasks.
    pub progress_acks: u64,
}

#[derive(Debug, Default)]
struct StatsCell {
    stats: Mutex<WorkerStats>,
    changed: Condvar,
}

impl StatsCell {
    fn update(&self, f: impl FnOnce(&mut WorkerStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_all();
    }
}

/// A running worker: stop it, wait for it, watch what it does.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<Result<(), ClusterError>>>,
    stats: Arc<StatsCell>,
}

impl WorkerHandle {
    /// Asks the worker to stop: it takes no new task, finishes and delivers the ones it
    /// runs, then ends.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits for the worker to end (after [`stop`](WorkerHandle::stop), or a fatal error).
    pub fn join(mut self) -> Result<(), ClusterError> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ClusterError::Closed("worker (its thread panicked)")),
            None => Ok(()),
        }
    }

    /// What the worker has done so far.
    pub fn stats(&self) -> WorkerStats {
        *self.stats.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `ready(stats)` holds, or `timeout` passes; returns the stats if it held.
    pub fn wait_for(&self, timeout: Duration, ready: impl Fn(&WorkerStats) -> bool) -> Option<WorkerStats> {
        let deadline = Instant::now() + timeout;
        let mut s = self.stats.stats.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if ready(&s) {
                return Some(*s);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            s = self.stats.changed.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves the pool's queue until the process ends, running the tasks on a local
/// `multiproc::Pool` of `config`'s processes (a [`PoolRunner`]). `multiproc::init()` must
/// be the first line of `main`. For a local pool with an initializer, recycling or
/// memory limits, give [`start_worker`] a [`PoolRunner`] of your own pool.
pub fn serve(config: WorkerConfig) -> Result<(), ClusterError> {
    let runner = PoolRunner::start(config.processes)?;
    start_worker(config, Arc::new(runner))?.join()
}

/// Starts a worker in the background that runs its tasks on `runner` (whose
/// [`slots`](TaskRunner::slots) say how many task messages it takes at once). It has
/// connected and found (or created) the queue when this returns.
pub fn start_worker(config: WorkerConfig, runner: Arc<dyn TaskRunner>) -> Result<WorkerHandle, ClusterError> {
    let (stop, stop_rx) = watch::channel(false);
    let stats = Arc::new(StatsCell::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread_stats = stats.clone();
    let thread = std::thread::Builder::new().name("multiproc-nats-worker".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let mut worker = match Worker::connect(config, runner, thread_stats).await {
                Ok(w) => {
                    let _ = ready_tx.send(Ok(()));
                    w
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            };
            worker.run(stop_rx).await
        })
    })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(WorkerHandle { stop, thread: Some(thread), stats }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => match thread.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(ClusterError::Closed("worker (it ended while starting)")),
        },
    }
}

/// Makes this program a worker when the environment asks for it: with
/// `MULTIPROC_NATS_WORKER=1`, it serves the pool the environment names (see
/// [`WorkerConfig::from_env`]) and exits, never returning; otherwise it returns at once.
///
/// Call it right after `multiproc::init()` in `main`.
pub fn init() {
    match std::env::var(WORKER_ENV) {
        Ok(v) if !v.is_empty() && v != "0" => {}
        _ => return,
    }
    let code = match WorkerConfig::from_env() {
        Err(e) => {
            eprintln!("multiproc-nats worker {}: {e}", std::process::id());
            2
        }
        Ok(config) => match serve(config) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("multiproc-nats worker {}: {e}", std::process::id());
                1
            }
        },
    };
    std::process::exit(code)
}

/// One task message in this worker's hands, until it is acked or terminated.
struct Held {
    msg: jetstream::Message,
    /// Terminate rather than ack once the client has heard (a refused task).
    refused: bool,
}

/// A pull request this worker has open: how many tasks it may still bring.
struct Request {
    left: usize,
    expires_at: Instant,
}

/// A task for a slot thread.
struct Job {
    key: u64,
    head: TaskHead,
    payload: Bytes,
    args_at: usize,
}

/// How handing a result to its client went.
enum Delivery {
    Confirmed,
    Abandoned(String),
}

struct Worker {
    config: WorkerConfig,
    client: async_nats::Client,
    js: jetstream::Context,
    consumer: jetstream::consumer::PullConsumer,
    runner: Arc<dyn TaskRunner>,
    stats: Arc<StatsCell>,
    events: mpsc::UnboundedReceiver<async_nats::Event>,
    me: RanOn,
    fingerprint: u64,
}

impl Worker {
    async fn connect(
        config: WorkerConfig,
        runner: Arc<dyn TaskRunner>,
        stats: Arc<StatsCell>,
    ) -> Result<Worker, ClusterError> {
        let me = RanOn { host: host_name(), worker_pid: std::process::id(), process_pid: None };
        let (event_tx, events) = mpsc::unbounded_channel();
        let client = broker::connect(&config.broker, format!("multiproc-nats worker {me}"), move |e| {
            let _ = event_tx.send(e);
        })
        .await?;
        let js = jetstream::new(client.clone());
        let stream = broker::task_stream(&js, &config.queue).await?;
        let consumer = broker::worker_consumer(&stream, &config.queue).await?;
        Ok(Worker {
            config,
            client,
            js,
            consumer,
            runner,
            stats,
            events,
            me,
            fingerprint: multiproc::remote::fingerprint(),
        })
    }

    fn log(&self, msg: impl std::fmt::Display) {
        eprintln!("multiproc-nats worker {}: {msg}", self.me);
    }

    async fn run(&mut self, mut stop: watch::Receiver<bool>) -> Result<(), ClusterError> {
        let slots = self.runner.slots().max(1);
        let ack_wait = self.consumer.cached_info().config.ack_wait;
        let mut progress = tokio::time::interval((ack_wait / 3).max(Duration::from_millis(20)));
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let inbox = self.client.new_inbox();
        let mut pulls = self
            .client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| ClusterError::Setup { what: "a subscription".into(), message: e.to_string() })?;

        // The slot threads: each runs one task at a time on the runner.
        let (job_tx, job_rx) = std::sync::mpsc::channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u64, RunReport)>();
        let mut threads = Vec::new();
        for slot in 0..slots {
            let (rx, tx, runner) = (job_rx.clone(), done_tx.clone(), self.runner.clone());
            threads.push(std::thread::Builder::new().name(format!("multiproc-nats-slot-{slot}")).spawn(move || {
                loop {
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(job) = job else { break };
                    let task = Task {
                        id: job.head.task_id,
                        fingerprint: job.head.fingerprint,
                        function: job.head.function,
                        trampoline: job.head.trampoline,
                        function_name: &job.head.function_name,
                        items: job.head.items,
                        chunk: job.head.chunk.max(1),
                        args: &job.payload[job.args_at..],
                        timeout: job.head.timeout_ms.map(Duration::from_millis),
                        retries: job.head.retries,
                    };
                    let failed = |message: String| {
                        let error = RemoteError::Spawn { host: host_name(), worker_pid: std::process::id(), message };
                        RunReport::failed(task.items, &error)
                    };
                    // A runner that panics must not leave its task held (and kept alive by
                    // in-progress acks) forever: the task fails instead.
                    let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run(slot, &task)))
                        .unwrap_or_else(|_| failed("the worker's task runner panicked".into()));
                    let report = if report.results.len() == task.items as usize {
                        report
                    } else {
                        failed(format!(
                            "the worker's runner gave {} outcomes for {} items",
                            report.results.len(),
                            task.items
                        ))
                    };
                    if tx.send((job.key, report)).is_err() {
                        break;
                    }
                }
            })?);
        }
        drop(done_tx);

        let mut held: HashMap<u64, Held> = HashMap::new();
        let mut heads: HashMap<u64, (u64, String, u64)> = HashMap::new(); // key -> (task id, reply_to, delivery)
        let mut requests: BTreeMap<u64, Request> = BTreeMap::new();
        let mut deliveries: JoinSet<(u64, Delivery)> = JoinSet::new();
        let mut next_key = 0u64;
        let mut next_request = 0u64;
        let mut running = 0usize;
        let mut stopping = false;
        let mut disconnected = false;
        let mut pull_again_at = Instant::now();

        loop {
            let awaiting: usize = requests.values().map(|r| r.left).sum();
            let free = self.runner.wanted().clamp(1, slots).saturating_sub(running + awaiting);
            if !stopping && free > 0 && Instant::now() >= pull_again_at {
                next_request += 1;
                let batch = jetstream::consumer::pull::BatchConfig {
                    batch: free,
                    expires: Some(self.config.pull_expiry),
                    ..Default::default()
                };
                match self.consumer.request_batch(batch, format!("{inbox}.{next_request}").into()).await {
                    Ok(()) => {
                        let expires_at = Instant::now() + self.config.pull_expiry + Duration::from_secs(2);
                        requests.insert(next_request, Request { left: free, expires_at });
                    }
                    Err(_) => pull_again_at = Instant::now() + Duration::from_millis(250),
                }
            }
            if stopping && running == 0 && held.is_empty() {
                break;
            }
            tokio::select! {
                msg = pulls.next() => {
                    let Some(msg) = msg else { break };
                    match msg.status {
                        Some(status) if status != async_nats::StatusCode::OK => {
                            // The end of a request, on its own subject: 408 it expired, 409
                            // the server ended it (too many waiting, consumer changed). 100
                            // is an idle heartbeat.
                            if status != async_nats::StatusCode::IDLE_HEARTBEAT
                                && let Some(r) = msg.subject.rsplit('.').next().and_then(|n| n.parse().ok())
                            {
                                requests.remove(&r);
                            }
                            continue;
                        }
                        _ => {}
                    }
                    // A task keeps its own subject, so which request it fills is not on it;
                    // the server fills a consumer's requests in the order they came.
                    if let Some(mut oldest) = requests.first_entry() {
                        oldest.get_mut().left -= 1;
                        if oldest.get().left == 0 {
                            oldest.remove();
                        }
                    }
                    let msg = jetstream::Message { message: msg, context: self.js.clone() };
                    if stopping || running >= slots {
                        // More than asked for (a request from before a reconnection): let
                        // another worker have it now.
                        let _ = msg.ack_with(AckKind::Nak(None)).await;
                        continue;
                    }
                    next_key += 1;
                    let key = next_key;
                    let delivery = msg.info().map(|i| i.delivered.max(1) as u64).unwrap_or(1);
                    self.stats.update(|s| {
                        s.received += 1;
                        if delivery > 1 {
                            s.redelivered += 1;
                        }
                    });
                    match self.check(&msg.payload) {
                        Ok((head, args_at)) => {
                            heads.insert(key, (head.task_id, head.reply_to.clone(), delivery));
                            let payload = msg.payload.clone();
                            held.insert(key, Held { msg, refused: false });
                            running += 1;
                            let _ = job_tx.send(Job { key, head, payload, args_at });
                        }
                        Err(Some((task_id, reply_to, error))) => {
                            self.stats.update(|s| s.refused += 1);
                            let ran_on = self.me.clone();
                            let head = ResultHead { version: PROTOCOL, task_id, ran_on, delivery, outcome: Outcome::Failed(error) };
                            let parts = vec![Bytes::from(head.encode(&[]))];
                            held.insert(key, Held { msg, refused: true });
                            deliveries.spawn(deliver(self.client.clone(), key, reply_to, parts, self.config.result_patience));
                        }
                        Err(None) => {
                            self.stats.update(|s| s.refused += 1);
                            let _ = msg.ack_with(AckKind::Term).await;
                        }
                    }
                }
                done = done_rx.recv() => {
                    let Some((key, report)) = done else { break };
                    running -= 1;
                    if let Some((task_id, reply_to, delivery)) = heads.remove(&key) {
                        let parts = self.result_parts(task_id, delivery, report.process_pid, &report.results);
                        deliveries.spawn(deliver(self.client.clone(), key, reply_to, parts, self.config.result_patience));
                    }
                }
                Some(joined) = deliveries.join_next(), if !deliveries.is_empty() => {
                    let Ok((key, delivery)) = joined else { continue };
                    let Some(h) = held.remove(&key) else { continue };
                    let kind = if h.refused { AckKind::Term } else { AckKind::Ack };
                    let _ = h.msg.ack_with(kind).await;
                    match delivery {
                        Delivery::Confirmed => self.stats.update(|s| if !h.refused { s.completed += 1 }),
                        Delivery::Abandoned(why) => {
                            self.log(format_args!("dropping a result its client never took: {why}"));
                            self.stats.update(|s| s.abandoned += 1);
                        }
                    }
                }
                _ = progress.tick() => {
                    let mut sent = 0;
                    for h in held.values() {
                        if h.msg.ack_with(AckKind::Progress).await.is_ok() {
                            sent += 1;
                        }
                    }
                    if sent > 0 {
                        self.stats.update(|s| s.progress_acks += sent);
                    }
                    let now = Instant::now();
                    // A request whose end never came (its connection broke) is over.
                    requests.retain(|_, r| r.expires_at > now);
                }
                event = self.events.recv() => match event {
                    Some(async_nats::Event::Disconnected) => {
                        self.log("lost the broker; reconnecting");
                        disconnected = true;
                    }
                    Some(async_nats::Event::Connected) if disconnected => {
                        self.log("reconnected to the broker");
                        disconnected = false;
                        // Requests of the old connection are gone with it.
                        requests.clear();
                    }
                    _ => {}
                },
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                }
                _ = tokio::time::sleep_until(pull_again_at.into()), if Instant::now() < pull_again_at => {}
            }
        }
        drop(job_tx);
        for t in threads {
            let _ = t.join();
        }
        let _ = self.client.flush().await;
        Ok(())
    }

    /// Reads a task's head and decides whether this worker may run it. A refusal carries
    /// the task's address and the error for its client, or nothing when even the address
    /// is unreadable.
    #[allow(clippy::type_complexity)]
    fn check(&self, payload: &[u8]) -> Result<(TaskHead, usize), Option<(u64, String, RemoteError)>> {
        let address = match postcard::take_from_bytes::<TaskAddress>(payload) {
            Ok((a, _)) => a,
            Err(e) => {
                self.log(format_args!("removing an unreadable task from the queue: {e}"));
                return Err(None);
            }
        };
        if address.version != PROTOCOL {
            self.log(format_args!(
                "refusing task {} from {}: it speaks cluster protocol {}, this worker {PROTOCOL}",
                address.task_id, address.reply_to, address.version
            ));
            let error = RemoteError::Version {
                host: self.me.host.clone(),
                worker_pid: self.me.worker_pid,
                client: address.version,
                worker: PROTOCOL,
            };
            return Err(Some((address.task_id, address.reply_to, error)));
        }
        let (head, arg) = match TaskHead::decode(payload) {
            Ok(v) => v,
            Err(e) => {
                let error = RemoteError::Codec { message: format!("the worker cannot read the task: {e}") };
                return Err(Some((address.task_id, address.reply_to, error)));
            }
        };
        if head.fingerprint != self.fingerprint {
            self.log(format_args!(
                "refusing task {} (`{}`) from {}: it was built by another binary (fingerprint {:016x}) than this \
                 worker ({:016x}); reporting WrongBinary to its client and removing it from the queue",
                head.task_id, head.function_name, head.reply_to, head.fingerprint, self.fingerprint
            ));
            let error = RemoteError::WrongBinary {
                host: self.me.host.clone(),
                worker_pid: self.me.worker_pid,
                client: head.fingerprint,
                worker: self.fingerprint,
            };
            return Err(Some((head.task_id, head.reply_to, error)));
        }
        let args_at = payload.len() - arg.len();
        Ok((head, args_at))
    }

    /// The result messages of a task: its items' outcomes, in as many messages as the
    /// broker's size limit needs. An item whose outcome alone is over the limit fails
    /// with `TooLarge`.
    fn result_parts(&self, task_id: u64, delivery: u64, pid: Option<u32>, results: &ItemResults) -> Vec<Bytes> {
        let ran_on = RanOn { process_pid: pid, ..self.me.clone() };
        let max = self.client.server_info().max_payload;
        // Room for the head (the worker's host name, at most a few hundred bytes).
        let room = if max == 0 { usize::MAX } else { max.saturating_sub(HEADER_ROOM + 1024) };
        let message = |first: usize, count: usize, entries: &[u8]| {
            let outcome = Outcome::Items { first: first as u32, count: count as u32 };
            let head = ResultHead { version: PROTOCOL, task_id, ran_on: ran_on.clone(), delivery, outcome };
            Bytes::from(head.encode(entries))
        };
        let n = results.len();
        let mut parts = Vec::new();
        let mut first = 0;
        while first < n {
            let mut end = first;
            let mut size = 0;
            while end < n && (end == first || size + results.entry_len(end) <= room) {
                size += results.entry_len(end);
                end += 1;
            }
            if size > room {
                let mut alone = ItemResults::new();
                alone.push(Err(&RemoteError::TooLarge { len: size as u64, max: max as u64 }));
                parts.push(message(first, 1, alone.entries(0..1)));
            } else {
                parts.push(message(first, end - first, results.entries(first..end)));
            }
            first = end;
        }
        parts
    }
}

/// Hands a task's result messages to its client, which confirms each by replying;
/// retries while the client cannot be reached (it may be reconnecting) for up to
/// `patience`.
async fn deliver(
    client: async_nats::Client,
    key: u64,
    reply_to: String,
    parts: Vec<Bytes>,
    patience: Duration,
) -> (u64, Delivery) {
    let started = Instant::now();
    for part in parts {
        let mut backoff = Duration::from_millis(20);
        loop {
            match client.request(reply_to.clone(), part.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    if started.elapsed() >= patience {
                        return (key, Delivery::Abandoned(format!("client {reply_to}: {e}")));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
    (key, Delivery::Confirmed)
}
