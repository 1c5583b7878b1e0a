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
///   not take it (`Broker`, `TooLarge`), a worker of another build refused it
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
#[derive(Debug, Clone)]
pub struct ClusterPool {
    client: ClientConfig,
    processes: usize,
    timeout: Option<Duration>,
    retries: u32,
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
        ClusterPool { client, processes: multiproc::cpu_count(), timeout: None, retries: 0 }
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
        let client = Client::connect(self.client)?;
        let backend = Arc::new(Backend {
            client,
            processes: self.processes,
            inner: Arc::new(Inner { state: Mutex::new(State::default()), changed: Condvar::new() }),
        });
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
        Some(backend.client.stats())
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
            RemoteError::Spawn { .. } => remote(RemoteFailure::Worker),
            RemoteError::Closed => TaskError::Closed { task },
        }
    }
}

/// The pool's backend: batches become task messages.
struct Backend {
    client: Client,
    processes: usize,
    inner: Arc<Inner>,
}

#[derive(Default)]
struct State {
    /// Items dispatched without an outcome yet.
    outstanding: u64,
    /// Messages with items still to come, by task id (to find cancelled ones).
    live: HashMap<u64, Arc<Batch>>,
    stats: PoolStats,
    /// Outcomes being handed to their callers, not yet counted.
    delivering: u32,
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
        if st.outstanding == 0 || st.delivering == 0 {
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

impl Backend {
    /// Cuts a batch into messages: whole chunks, at least `ceil(n / (4 × processes))`
    /// items each (so a map of tiny tasks is not one message per item, and there are
    /// still enough messages to spread), within the broker's size limit.
    fn dispatch_batch(&self, mut batch: Batch) {
        let n = batch.len();
        let spread = 4 * self.processes as u32;
        let chunk = batch.chunk().unwrap_or_else(|| n.div_ceil(spread).max(1));
        let per_message = n.div_ceil(spread).max(chunk).div_ceil(chunk) * chunk;
        // The head: offsets, ids, the subject and the function's name.
        let head = 128 + self.client.id().len() + batch.function_name().len();
        let room = self.client.max_payload().saturating_sub(HEADER_ROOM + head).max(1);
        while !batch.is_empty() {
            let mut take = per_message.min(batch.len());
            while take > 1 && batch.size_of(0, take) > room {
                take = take.div_ceil(2);
            }
            let rest = batch.split_off(take);
            self.send(batch, chunk);
            batch = rest;
        }
    }

    fn send(&self, piece: Batch, chunk: u32) {
        let piece = Arc::new(piece);
        let id = self.client.new_task_id();
        {
            let mut st = self.inner.lock();
            st.outstanding += piece.len() as u64;
            st.live.insert(id, piece.clone());
        }
        let task = ItemsTask {
            code: TaskCode {
                function: piece.function(),
                trampoline: piece.trampoline(),
                function_name: piece.function_name(),
            },
            items: piece.len(),
            chunk: chunk.min(piece.len()),
            args: piece.items().to_vec(),
            timeout: piece.timeout(),
            retries: piece.retries(),
        };
        let (inner, held) = (self.inner.clone(), piece.clone());
        let mut left = piece.len();
        let on_item: OnItem = Box::new(move |k, outcome, _, _| {
            left -= 1;
            let outcome = outcome.map_err(|e| inner.task_error(&held, &e));
            inner.complete(id, &held, k, outcome, left == 0);
        });
        if self.client.submit_items(id, task, on_item).is_err() {
            // Only a closed client refuses: the pool was joined or terminated.
            let terminated = self.inner.lock().terminated;
            let task = piece.function_name();
            for k in 0..piece.len() {
                let e = if terminated { TaskError::Terminated { task } } else { TaskError::Closed { task } };
                self.inner.complete(id, &piece, k, Err(e), k + 1 == piece.len());
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
            self.inner.lock().outstanding += batch.len() as u64;
            for k in 0..batch.len() {
                let e = TaskError::Codec { task, message: message.clone() };
                // Never sent, so no task id and nothing live to forget.
                self.inner.complete(0, &batch, k, Err(e), false);
            }
            return;
        }
        self.dispatch_batch(batch);
    }

    fn cancel(&self) {
        let ids: Vec<u64> = self.inner.lock().live.iter().filter(|(_, b)| b.cancelled()).map(|(id, _)| *id).collect();
        if !ids.is_empty() {
            self.client.abandon(&ids, &RemoteError::Closed);
        }
    }

    fn join(&self) {
        let mut st = self.inner.lock();
        while st.outstanding > 0 {
            st = self.inner.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        drop(st);
        self.client.close();
    }

    fn terminate(&self) {
        self.inner.lock().terminated = true;
        self.client.close();
    }

    fn stats(&self) -> PoolStats {
        let mut st = self.inner.lock();
        // From a callback, the outcome it is part of cannot be counted yet: no waiting.
        while st.delivering > 0 && !IN_COMPLETION.get() {
            st = self.inner.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.stats.clone()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
