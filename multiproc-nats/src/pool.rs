//! [`ClusterPool`]: a `multiproc::Pool` whose tasks run on a cluster of workers.
//!
//! The pool is multiproc's own `Pool` type, built with a different backend: everything in
//! front of the backend (`apply`, the map family, chunk sizes, windows, callbacks,
//! `AsyncResult`, `MapResult`, `IMapIter`, `TaskError`) is the local pool's code, and the
//! backend here turns each batch the pool would give a local worker into task messages
//! on the broker, and each item's outcome back into what a local worker's would have been.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use multiproc::remote::{Batch, Delivered, Dispatch, TaskCode};
use multiproc::{Attempt, Pool, PoolStats, RemoteFailure, TaskError};

use crate::client::{Client, ClientConfig, ClientStats, ItemsTask, OnItem};
use crate::config::{BrokerConfig, ConfigError, QueueConfig};
use crate::envelope::HEADER_ROOM;
use crate::envelope::RemoteError;
use crate::error::ClusterError;

/// Connects to a cluster and gives a [`multiproc::Pool`] whose tasks run there: the very
/// same type, calls and results as a local pool, so a program switches with one line.
///
/// ```no_run
/// use multiproc::{Pool, TaskError};
/// use multiproc_nats::ClusterPool;
///
/// fn work(n: u64) -> u64 { n * n }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     multiproc::init();
///     multiproc_nats::init(); // with MULTIPROC_NATS_WORKER=1 this program serves instead
///     // let pool = Pool::new(4)?;                              // on this machine
///     let pool: Pool = ClusterPool::from_env()?.processes(16).connect()?; // on the cluster
///     assert_eq!(pool.apply(work, 3)?, 9);
///     let h = pool.apply_async(work, 4);
///     assert_eq!(h.get()?, 16);
///     assert_eq!(pool.map(work, 0..5)?, [0, 1, 4, 9, 16]);
///     let v: Vec<u64> = pool.imap(work, 0..5).collect::<Result<_, TaskError>>()?;
///     pool.close();
///     pool.join()?;
///     Ok(())
/// }
/// ```
///
/// What stays the same, and what a cluster changes:
///
/// - Tasks, arguments, results, chunking, `imap`'s bounded window, callbacks (they run in
///   this process, on the client's thread), and every [`TaskError`]: a task that panics,
///   crashes its process or passes its timeout on a worker gives `Panicked`,
///   `WorkerDied` (naming the signal) or `Timeout`, as locally — the worker's own local
///   pool ran it, so `retries` and the rest mean what they mean there.
/// - Failures a single machine does not have are [`TaskError::Remote`]: the broker gave
///   up on a task after every worker that took it vanished, or its
///   [result deadline](ClusterPool::result_deadline) passed (`Lost`), the broker could
///   not take it (`Broker`), a worker of another build refused it
///   ([`RemoteFailure::WrongBinary`]; only a task sent to it by hand: tasks go only to
///   workers of their build).
/// - Delivery is **at least once**: a worker machine that vanishes has its unfinished
///   tasks run again by others, so a task may run twice; the caller still gets exactly
///   one outcome per item. Tasks should be idempotent.
/// - [`processes`](ClusterPool::processes) stands for the cluster's size: it sizes
///   chunks (`map` cuts `ceil(n / (4 × processes))` items per task) and windows, as a
///   local pool's worker count does. Several tasks may travel in one broker message;
///   each still runs, fails and times out on its own.
/// - `cancel()` drops what has not finished; a task a worker already runs finishes there,
///   unheard. `terminate()` fails what is unfinished with `Terminated` and removes the
///   queued tasks. `join()` waits for every outcome. Arguments carrying file descriptors
///   cannot leave the machine (a `Codec` error).
/// - Arguments and results of any size travel: an item too large for one broker message
///   goes through the pool's object store, and is deleted from it once read (see the
///   crate docs).
#[derive(Debug, Clone)]
pub struct ClusterPool {
    client: ClientConfig,
    processes: usize,
    timeout: Option<Duration>,
    retries: u32,
    gather: Option<bool>,
}

impl ClusterPool {
    /// A pool of the default queue on `broker`.
    ///
    /// ```
    /// use multiproc_nats::ClusterPool;
    /// use std::time::Duration;
    ///
    /// let cp = ClusterPool::new(multiproc_nats::BrokerConfig::parse("nats://broker.example")?).processes(32);
    /// # drop(cp);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn new(broker: BrokerConfig) -> ClusterPool {
        ClusterPool::with_client(ClientConfig::new(broker))
    }

    /// A pool as the client configuration says (broker, queue, patience).
    ///
    /// ```
    /// use multiproc_nats::ClusterPool;
    /// use std::time::Duration;
    ///
    /// let client = multiproc_nats::ClientConfig::from_env()?;
    /// let cp = ClusterPool::with_client(client);
    /// # drop(cp);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn with_client(client: ClientConfig) -> ClusterPool {
        ClusterPool { client, processes: multiproc::cpu_count(), timeout: None, retries: 0, gather: None }
    }

    /// The broker from `MULTIPROC_NATS_URL` and the queue from `MULTIPROC_NATS_POOL`.
    ///
    /// ```
    /// use multiproc_nats::ClusterPool;
    /// use std::time::Duration;
    ///
    /// let cp = ClusterPool::from_env()?;
    /// # drop(cp);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn from_env() -> Result<ClusterPool, ConfigError> {
        Ok(ClusterPool::with_client(ClientConfig::from_env()?))
    }

    /// Submits to this queue (its settings apply if this pool creates it).
    ///
    /// ```
    /// use multiproc_nats::ClusterPool;
    /// use std::time::Duration;
    ///
    /// let cp = ClusterPool::from_env()?.queue(multiproc_nats::QueueConfig::default().pool("render")?);
    /// # drop(cp);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn queue(mut self, queue: QueueConfig) -> ClusterPool {
        self.client = self.client.queue(queue);
        self
    }

    /// How many processes the cluster runs tasks in, roughly (default: this machine's
    /// CPU count): sizes chunks and `imap` windows as a local pool's `processes` does.
    ///
    /// ```
    /// use multiproc_nats::ClusterPool;
    /// use std::time::Duration;
    ///
    /// let cp = ClusterPool::from_env()?.processes(64); // sizes chunks and windows
    /// # drop(cp);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn processes(mut self, n: usize) -> ClusterPool {
        self.processes = n.max(1);
        self
    }

    /// A time limit for every task, as `PoolBuilder::timeout`: the worker kills the
    /// process running a task past it.
    ///
    /// ```
    /// use multiproc_nats::ClusterPool;
    /// use std::time::Duration;
    ///
    /// let cp = ClusterPool::from_env()?.timeout(Duration::from_secs(600)); // per task
    /// # drop(cp);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn timeout(mut self, limit: Duration) -> ClusterPool {
        self.timeout = Some(limit);
        self
    }

    /// How long a task may go without its outcome, from submission, before its caller
    /// gets `TaskError::Remote { kind: RemoteFailure::Lost, .. }` saying so (see
    /// [`ClientConfig::result_deadline`]); no deadline by default.
    ///
    /// ```
    /// use multiproc_nats::ClusterPool;
    /// use std::time::Duration;
    ///
    /// let cp = ClusterPool::from_env()?.result_deadline(Duration::from_secs(3600));
    /// # drop(cp);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn result_deadline(mut self, d: Duration) -> ClusterPool {
        self.client = self.client.result_deadline(d);
        self
    }

    /// Runs an item again, up to `n` times, when the process running it dies, as
    /// `PoolBuilder::retries` (on the worker that had it).
    ///
    /// ```
    /// use multiproc_nats::ClusterPool;
    /// use std::time::Duration;
    ///
    /// let cp = ClusterPool::from_env()?.retries(2);
    /// # drop(cp);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn retries(mut self, n: u32) -> ClusterPool {
        self.retries = n;
        self
    }

    /// Whether single-item submissions (`apply`, `apply_async`) made close together
    /// travel together, several in one broker message (default: yes, unless
    /// `MULTIPROC_NATS_GATHER=0`). Each still runs, fails and times out on its own; a
    /// burst of `apply_async` costs a few messages instead of one each, and a lone
    /// `apply` waits some 50 µs more. Off, every submission is its own message.
    pub fn gather(mut self, on: bool) -> ClusterPool {
        self.gather = Some(on);
        self
    }

    /// Connects, finds or creates the queue, and gives the pool.
    ///
    /// ```no_run
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let pool = multiproc_nats::ClusterPool::from_env()?.connect()?;
    /// assert_eq!(pool.map(square, 0..4)?, [0, 1, 4, 9]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect(self) -> Result<Pool, ClusterError> {
        let gather = match self.gather {
            Some(on) => on,
            None => gather_from_env()?,
        };
        let client = Client::connect(self.client)?;
        let inner = Arc::new(Inner { state: Mutex::new(State::default()), changed: Condvar::new() });
        let out = Arc::new(Sender { client, processes: self.processes, inner });
        let backend = Arc::new(Backend::new(out, gather)?);
        let pool = multiproc::remote::pool_with(backend, self.processes, self.timeout, self.retries)
            .map_err(|e| ClusterError::Setup { what: "a pool".into(), message: e.to_string() })?;
        Ok(pool)
    }

    /// What the broker client of a pool made by [`connect`](ClusterPool::connect) has
    /// seen (duplicates dropped, tasks lost, ...); `None` for a local pool.
    ///
    /// ```no_run
    /// multiproc::init();
    /// let pool = multiproc_nats::ClusterPool::from_env()?.connect()?;
    /// let stats = multiproc_nats::ClusterPool::client_stats(&pool).expect("a cluster pool");
    /// println!("{} submitted", stats.submitted);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_stats(pool: &Pool) -> Option<ClientStats> {
        let backend = multiproc::remote::dispatch_of(pool)?.as_any().downcast_ref::<Backend>()?;
        Some(backend.out.client.stats())
    }
}

impl RemoteError {
    /// The local pool's error for the same failure of task `task`.
    ///
    /// ```
    /// use multiproc_nats::RemoteError;
    ///
    /// let e = RemoteError::Panicked { message: "boom".into(), location: None, backtrace: None };
    /// assert!(matches!(e.to_task_error("square"), multiproc::TaskError::Panicked { .. }));
    /// ```
    pub fn to_task_error(&self, task: &'static str) -> TaskError {
        let remote = |kind| TaskError::Remote { task, kind, message: self.to_string() };
        match self {
            RemoteError::Panicked { message, location, backtrace } => TaskError::Panicked {
                task,
                message: message.clone(),
                location: location.clone().unwrap_or_else(|| "<unknown>".into()),
                backtrace: backtrace.clone(),
            },
            RemoteError::WorkerDied { pid, exitcode, attempts, hint, .. } => {
                let attempt = |(pid, code): (u32, i32)| {
                    if code < 0 {
                        Attempt { pid, signal: Some(-code), exit_code: None }
                    } else {
                        Attempt { pid, signal: None, exit_code: Some(code) }
                    }
                };
                let mut attempts: Vec<Attempt> = attempts.iter().copied().map(attempt).collect();
                if attempts.is_empty() {
                    attempts.push(attempt((*pid, *exitcode)));
                }
                let last = attempt((*pid, *exitcode));
                TaskError::WorkerDied {
                    task,
                    pid: *pid,
                    signal: last.signal,
                    exit_code: last.exit_code,
                    code: *exitcode,
                    attempts,
                    hint: hint.clone(),
                }
            }
            RemoteError::Timeout { pid, after, .. } => TaskError::Timeout { task, pid: *pid, timeout: *after },
            RemoteError::Codec { message } => TaskError::Codec { task, message: message.clone() },
            RemoteError::PoolBroken { host, worker_pid, reason } => {
                TaskError::PoolBroken { task, reason: format!("{reason} (the pool of worker {host}:{worker_pid})") }
            }
            RemoteError::WrongBinary { .. } => remote(RemoteFailure::WrongBinary),
            RemoteError::Version { .. } => remote(RemoteFailure::Version),
            // The result can no longer be counted on: lost, as far as the caller goes.
            RemoteError::Lost { .. } | RemoteError::Deadline { .. } => remote(RemoteFailure::Lost),
            RemoteError::Broker { .. } => remote(RemoteFailure::Broker),
            RemoteError::TooLarge { .. } => remote(RemoteFailure::TooLarge),
            // A large payload the broker's object store would not keep or give back.
            RemoteError::Object { .. } => remote(RemoteFailure::Broker),
            RemoteError::Spawn { .. } => remote(RemoteFailure::Worker),
            RemoteError::Closed => TaskError::Closed { task },
        }
    }
}

/// The pool's backend: batches become task messages; single-item submissions
/// (`apply`, `apply_async`) are gathered into shared messages first (see `gather`).
struct Backend {
    out: Arc<Sender>,
    gather: Option<Gather>,
}

/// What turns batches into task messages.
struct Sender {
    client: Client,
    processes: usize,
    inner: Arc<Inner>,
}

#[derive(Default)]
struct State {
    /// Items dispatched without an outcome yet.
    outstanding: u64,
    /// Messages with items still to come, by task id (to find cancelled ones).
    live: HashMap<u64, Pieces>,
    stats: PoolStats,
    /// Outcomes being handed to their callers, not yet counted.
    delivering: u32,
    /// Threads waiting on `changed` (a notification is a system call: none without them).
    waiters: u32,
    terminated: bool,
}

struct Inner {
    state: Mutex<State>,
    /// Signalled when `outstanding` or `delivering` drops to zero.
    changed: Condvar,
}

thread_local! {
    /// This thread is handing an outcome to its caller (callbacks run here).
    static IN_COMPLETION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// This thread is the gathering thread (a callback run there that submits sends at
    /// once: it would wait for itself otherwise).
    static GATHERING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Item `k` of `piece` (task `id`) ended with `outcome`.
    fn complete(&self, id: u64, piece: &Batch, k: u32, outcome: Result<&[u8], TaskError>, last: bool) {
        let failure = outcome.as_ref().err().cloned();
        // Until the statistics count it, `stats()` waits: whoever saw an outcome sees it
        // counted, as with a local pool.
        self.lock().delivering += 1;
        let was = IN_COMPLETION.replace(true);
        let delivered = piece.complete(k, outcome);
        IN_COMPLETION.set(was);
        let mut st = self.lock();
        st.delivering -= 1;
        let s = &mut st.stats;
        match (delivered, failure) {
            (Delivered::Value, _) => s.tasks_done += 1,
            (Delivered::CallbackPanicked, _) => {
                s.tasks_done += 1;
                s.callback_panics += 1;
            }
            (Delivered::CodecFailed, _) => s.tasks_codec_failed += 1,
            // Counted even when the handle had ended already (cancelled), as locally.
            (Delivered::Ignored, Some(TaskError::Cancelled { .. })) => s.tasks_cancelled += 1,
            (Delivered::Ignored, Some(TaskError::Terminated { .. })) => s.tasks_terminated += 1,
            (Delivered::Failed, Some(e)) => match e {
                TaskError::Panicked { .. } => s.tasks_panicked += 1,
                TaskError::WorkerDied { attempts, .. } => {
                    // Each attempt is a process of a worker's pool that died.
                    s.tasks_worker_died += 1;
                    s.tasks_retried += attempts.len().saturating_sub(1) as u64;
                    s.workers_died += attempts.len() as u64;
                    for a in &attempts {
                        if let Some(sig) = a.signal {
                            *s.died_by_signal.entry(sig).or_default() += 1;
                        } else if let Some(code) = a.exit_code {
                            *s.died_by_exit_code.entry(code).or_default() += 1;
                        }
                    }
                }
                TaskError::Timeout { .. } => s.tasks_timed_out += 1,
                TaskError::Cancelled { .. } => s.tasks_cancelled += 1,
                TaskError::Terminated { .. } => s.tasks_terminated += 1,
                TaskError::Codec { .. } => s.tasks_codec_failed += 1,
                _ => {}
            },
            _ => {}
        }
        st.outstanding -= 1;
        if last {
            st.live.remove(&id);
        }
        if st.waiters > 0 && (st.outstanding == 0 || st.delivering == 0) {
            self.changed.notify_all();
        }
    }

    /// What the caller sees for an item that failed remotely.
    fn task_error(&self, piece: &Batch, e: &RemoteError) -> TaskError {
        let task = piece.function_name();
        if piece.cancelled() {
            return TaskError::Cancelled { task };
        }
        match e {
            RemoteError::Closed if self.lock().terminated => TaskError::Terminated { task },
            e => e.to_task_error(task),
        }
    }
}

impl Sender {
    /// Cuts a batch into messages: whole chunks, at least `ceil(n / (4 × processes))`
    /// items each (so a map of tiny tasks is not one message per item, and there are
    /// still enough messages to spread), within the broker's size limit. An item alone
    /// over the limit is a message of its own, whose items the client puts in the
    /// pool's object store.
    fn dispatch_batch(&self, mut batch: Batch) {
        let n = batch.len();
        let spread = 4 * self.processes as u32;
        let chunk = batch.chunk().unwrap_or_else(|| n.div_ceil(spread).max(1));
        let per_message = n.div_ceil(spread).max(chunk).div_ceil(chunk) * chunk;
        let room = self.room(batch.function_name());
        let wire_chunk = wire_chunk(batch.chunk_is_free(), batch.timeout(), chunk);
        while !batch.is_empty() {
            let mut take = per_message.min(batch.len());
            while take > 1 && batch.size_of(0, take) > room {
                take = take.div_ceil(2);
            }
            let rest = batch.split_off(take);
            self.send(batch, wire_chunk);
            batch = rest;
        }
    }

    /// Room for items in one message of `function_name`'s tasks.
    fn room(&self, function_name: &str) -> usize {
        // The head: offsets, ids, the subject and the function's name.
        let head = 128 + self.client.id().len() + function_name.len();
        self.client.max_payload().saturating_sub(HEADER_ROOM + head).max(1)
    }

    fn send(&self, piece: Batch, chunk: u32) {
        self.send_pieces(vec![piece], chunk);
    }

    /// Sends `pieces` (batches of one function, time limit and retries) as one task
    /// message of their items in order, each piece's items `chunk` to a task.
    fn send_pieces(&self, pieces: Vec<Batch>, chunk: u32) {
        let pieces = Pieces::new(pieces);
        let id = self.client.new_task_id();
        let len = pieces.len();
        {
            let mut st = self.inner.lock();
            st.live.insert(id, pieces.clone());
        }
        let first = pieces.piece(0).0;
        let task = ItemsTask {
            code: TaskCode {
                function: first.function(),
                trampoline: first.trampoline(),
                function_name: first.function_name(),
            },
            items: len,
            chunk: chunk.min(len),
            args: pieces.args(),
            timeout: first.timeout(),
            retries: first.retries(),
        };
        let (inner, held) = (self.inner.clone(), pieces.clone());
        let mut left = len;
        let on_item: OnItem = Box::new(move |k, outcome, _, _| {
            left -= 1;
            let (piece, k) = held.piece(k);
            // A cancelled item sharing its message with others ran on: its caller
            // hears `Cancelled`, as if it had been dropped.
            let outcome = match outcome {
                Ok(_) if piece.cancelled() => Err(TaskError::Cancelled { task: piece.function_name() }),
                outcome => outcome.map_err(|e| inner.task_error(piece, &e)),
            };
            inner.complete(id, piece, k, outcome, left == 0);
        });
        if self.client.submit_items(id, task, on_item).is_err() {
            // Only a closed client refuses: the pool was joined or terminated.
            for k in 0..len {
                let (piece, j) = pieces.piece(k);
                let e = self.inner.task_error(piece, &RemoteError::Closed);
                self.inner.complete(id, piece, j, Err(e), k + 1 == len);
            }
        }
    }

    /// Sends gathered single-item batches: those of one function, time limit and
    /// retries together, in messages of at most `ceil(n / processes)` items (so a burst
    /// still spreads over the cluster), [`GATHER_MAX`] items and the broker's limit.
    fn send_gathered(&self, batches: Vec<Batch>) {
        type Key = (i64, i64, Option<Duration>, u32);
        let mut groups: Vec<(Key, Vec<Batch>)> = Vec::new();
        for b in batches {
            if b.cancelled() {
                // Cancelled before it left: it never travels.
                let e = TaskError::Cancelled { task: b.function_name() };
                self.inner.complete(0, &b, 0, Err(e), false);
                continue;
            }
            let key = (b.function(), b.trampoline(), b.timeout(), b.retries());
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, g)) => g.push(b),
                None => groups.push((key, vec![b])),
            }
        }
        for (_, group) in groups {
            let per_message = group.len().div_ceil(self.processes.max(1)).clamp(1, GATHER_MAX);
            let room = self.room(group[0].function_name());
            let (mut message, mut size) = (Vec::new(), 0);
            for b in group {
                let n = b.items().len();
                if !message.is_empty() && (message.len() == per_message || size + n > room) {
                    self.send_pieces(std::mem::take(&mut message), 1);
                    size = 0;
                }
                size += n;
                message.push(b);
            }
            if !message.is_empty() {
                self.send_pieces(message, 1);
            }
        }
    }
}

/// The chunk a task message asks its worker for: `chunk`, or 0, the worker's choice,
/// when the caller left the cut to the pool (`free`: the default chunksize or an adaptive
/// one) and no time limit bounds a chunk. A worker's local pool then cuts by measured
/// time, so a long message's results are stored as it runs and a redelivery re-runs
/// little finished work.
fn wire_chunk(free: bool, timeout: Option<Duration>, chunk: u32) -> u32 {
    if free && timeout.is_none() { 0 } else { chunk }
}

/// The batches whose items one task message carries, in order.
#[derive(Clone)]
struct Pieces {
    batches: Arc<Vec<Batch>>,
    /// Where each batch's items start in the message.
    starts: Arc<Vec<u32>>,
}

impl Pieces {
    fn new(batches: Vec<Batch>) -> Pieces {
        let mut starts = Vec::with_capacity(batches.len());
        let mut at = 0;
        for b in &batches {
            starts.push(at);
            at += b.len();
        }
        Pieces { batches: Arc::new(batches), starts: Arc::new(starts) }
    }

    fn len(&self) -> u32 {
        self.batches.iter().map(Batch::len).sum()
    }

    /// The message's item `k`: its batch, and its index there.
    fn piece(&self, k: u32) -> (&Batch, u32) {
        let i = self.starts.partition_point(|&s| s <= k).saturating_sub(1);
        (&self.batches[i], k - self.starts[i])
    }

    fn args(&self) -> Vec<u8> {
        let mut args = Vec::with_capacity(self.batches.iter().map(|b| b.items().len()).sum());
        for b in self.batches.iter() {
            args.extend_from_slice(b.items());
        }
        args
    }

    /// Whether every batch's caller cancelled.
    fn cancelled(&self) -> bool {
        self.batches.iter().all(Batch::cancelled)
    }
}

/// At most this many gathered submissions travel in one message.
const GATHER_MAX: usize = 256;

/// The environment variable that turns gathering off (`0`); on by default.
pub const GATHER_ENV: &str = "MULTIPROC_NATS_GATHER";

/// `MULTIPROC_NATS_GATHER`: `1` (or unset) gathers, `0` does not; anything else is an
/// error naming the variable.
fn gather_from_env() -> Result<bool, ConfigError> {
    match std::env::var(GATHER_ENV) {
        Err(_) => Ok(true),
        Ok(v) => parse_gather(&v),
    }
}

fn parse_gather(v: &str) -> Result<bool, ConfigError> {
    match v.trim() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(format!("{GATHER_ENV}={v} is neither 1 nor 0"))),
    }
}

/// Single-item submissions waiting to travel together, and the thread that sends them.
///
/// A submitting thread only queues its batch and wakes the thread; the thread waits a
/// moment for more to come, takes all that is there and sends it as few messages. So a
/// burst of `apply_async` is a few broker messages (and a few result messages back),
/// not one per call, and a lone `apply` waits [`GATHER_LINGER`] more.
struct Gather {
    queue: Arc<GatherQueue>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct GatherQueue {
    state: Mutex<(Vec<Batch>, bool)>,
    wake: Condvar,
}

/// How long the gathering thread waits for more submissions after the first.
const GATHER_LINGER: Duration = Duration::from_micros(50);

impl GatherQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Batch>, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next submissions, after the linger; `None` once stopped with none left.
    fn take(&self) -> Option<Vec<Batch>> {
        let mut st = self.lock();
        while st.0.is_empty() && !st.1 {
            st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.0.is_empty() {
            return None;
        }
        if !st.1 && st.0.len() < GATHER_MAX {
            drop(st);
            std::thread::sleep(GATHER_LINGER);
            st = self.lock();
        }
        Some(std::mem::take(&mut st.0))
    }
}

impl Backend {
    fn new(out: Arc<Sender>, gather: bool) -> Result<Backend, ClusterError> {
        if !gather {
            return Ok(Backend { out, gather: None });
        }
        let queue = Arc::new(GatherQueue::default());
        let (q, o) = (queue.clone(), out.clone());
        let thread = std::thread::Builder::new()
            .name("multiproc-nats-gather".into())
            .spawn(move || {
                GATHERING.set(true);
                while let Some(batches) = q.take() {
                    o.send_gathered(batches);
                }
            })
            .map_err(|e| ClusterError::Setup { what: "the gathering thread".into(), message: e.to_string() })?;
        Ok(Backend { out, gather: Some(Gather { queue, thread: Some(thread) }) })
    }

    /// Sends what is gathered and stops the gathering thread.
    fn stop_gathering(&self) {
        if let Some(g) = &self.gather {
            g.queue.lock().1 = true;
            g.queue.wake.notify_all();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop_gathering();
        if let Some(t) = self.gather.as_mut().and_then(|g| g.thread.take()) {
            // Not from the thread itself (a callback there dropping the last handle).
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Dispatch for Backend {
    fn dispatch(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        if batch.carries_descriptors() {
            let task = batch.function_name();
            let message = "an argument carries a file descriptor, which cannot travel to another machine".to_string();
            self.out.inner.lock().outstanding += batch.len() as u64;
            for k in 0..batch.len() {
                let e = TaskError::Codec { task, message: message.clone() };
                // Never sent, so no task id and nothing live to forget.
                self.out.inner.complete(0, &batch, k, Err(e), false);
            }
            return;
        }
        self.out.inner.lock().outstanding += batch.len() as u64;
        match &self.gather {
            Some(g) if batch.len() == 1 && !GATHERING.get() => {
                let mut st = g.queue.lock();
                if !st.1 {
                    let first = st.0.is_empty();
                    st.0.push(batch);
                    drop(st);
                    if first {
                        g.queue.wake.notify_one();
                    }
                    return;
                }
                drop(st);
                self.out.dispatch_batch(batch);
            }
            _ => self.out.dispatch_batch(batch),
        }
    }

    fn cancel(&self) {
        let ids: Vec<u64> =
            self.out.inner.lock().live.iter().filter(|(_, b)| b.cancelled()).map(|(id, _)| *id).collect();
        if !ids.is_empty() {
            self.out.client.abandon(&ids, &RemoteError::Closed);
        }
    }

    fn join(&self) {
        let mut st = self.out.inner.lock();
        while st.outstanding > 0 {
            st.waiters += 1;
            st = self.out.inner.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            st.waiters -= 1;
        }
        drop(st);
        self.out.client.close();
    }

    fn terminate(&self) {
        self.out.inner.lock().terminated = true;
        self.out.client.close();
    }

    fn delivers_on_this_thread(&self) -> bool {
        self.out.client.delivers_on_this_thread()
    }

    fn stats(&self) -> PoolStats {
        let mut st = self.out.inner.lock();
        // From a callback, the outcome it is part of cannot be counted yet: no waiting.
        while st.delivering > 0 && !IN_COMPLETION.get() {
            st.waiters += 1;
            st = self.out.inner.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            st.waiters -= 1;
        }
        st.stats.clone()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_leaves_the_cut_to_its_worker_only_when_the_caller_did_and_no_limit_binds() {
        let limit = Some(Duration::from_secs(1));
        assert_eq!(wire_chunk(true, None, 125), 0);
        assert_eq!(wire_chunk(true, limit, 125), 125, "a time limit bounds the default chunk");
        assert_eq!(wire_chunk(false, None, 10), 10, "the caller's chunksize is kept");
        assert_eq!(wire_chunk(false, limit, 10), 10);
    }

    #[test]
    fn the_gather_setting_is_one_or_zero_and_anything_else_is_named() {
        assert!(parse_gather("1").unwrap());
        assert!(!parse_gather(" 0 ").unwrap());
        assert!(!parse_gather("off").unwrap());
        let e = parse_gather("maybe").unwrap_err().to_string();
        assert!(e.contains("MULTIPROC_NATS_GATHER=maybe"), "{e}");
    }
}
