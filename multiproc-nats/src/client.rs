//! The submitting side: puts tasks on the pool's queue and collects their results, which
//! workers send to this client's own subject only.
//!
//! Delivery is at least once: a task whose worker vanished is run again elsewhere, so a
//! task may run twice, and its result may arrive twice. The client keeps every task it
//! waits for by id and drops any result for an id it no longer waits for, so each caller
//! sees exactly one result per task. Tasks should be idempotent.
//!
//! Items too large for a message travel through the pool's object store (`objects.rs`):
//! the client stores a task's items before its message, and deletes them once every
//! item has its outcome; it reads a result stored there, and deletes it before handing
//! it out. A closing client deletes whatever of its own is left.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::broker;
use crate::config::{BrokerConfig, ConfigError, QueueConfig, parse_seconds};
use crate::envelope::{
    HEADER_ROOM, Outcome, PROTOCOL, RanOn, RemoteError, ResultHead, TaskHead, for_each_entry, push_item,
};
use crate::error::{ClusterError, TaskFailure};
use crate::objects::{self, Fetch, Objects};
use crate::status::QueueStatus;

/// How a client connects and how long it keeps trying to hand a task to the broker.
///
/// ```
/// use multiproc_nats::{BrokerConfig, ClientConfig, QueueConfig};
/// use std::time::Duration;
///
/// let config = ClientConfig::new(BrokerConfig::parse("nats://127.0.0.1:4222")?)
///     .queue(QueueConfig::default().pool("render")?)
///     .result_deadline(Duration::from_secs(600)); // no task waits longer for its outcome
/// # drop(config);
/// # Ok::<(), multiproc_nats::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) broker: BrokerConfig,
    pub(crate) queue: QueueConfig,
    pub(crate) submit_patience: Duration,
    pub(crate) result_deadline: Option<Duration>,
}

/// The environment variable giving a client's result deadline in seconds (see
/// [`ClientConfig::result_deadline`]).
pub const RESULT_DEADLINE_ENV: &str = "MULTIPROC_NATS_RESULT_DEADLINE";

/// The environment variable giving a client's submit patience in seconds (see
/// [`ClientConfig::submit_patience`]).
pub const SUBMIT_PATIENCE_ENV: &str = "MULTIPROC_NATS_SUBMIT_PATIENCE";

impl ClientConfig {
    /// A client of the default pool on `broker`.
    ///
    /// ```
    /// use multiproc_nats::{BrokerConfig, ClientConfig, QueueConfig};
    /// use std::time::Duration;
    ///
    /// let c = ClientConfig::new(BrokerConfig::parse("nats://broker.example")?);
    /// # drop(c);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn new(broker: BrokerConfig) -> ClientConfig {
        ClientConfig {
            broker,
            queue: QueueConfig::default(),
            submit_patience: Duration::from_secs(60),
            result_deadline: None,
        }
    }

    /// The broker from `MULTIPROC_NATS_URL`, the pool and its settings as
    /// [`QueueConfig::from_env`] reads them, the result deadline from
    /// `MULTIPROC_NATS_RESULT_DEADLINE` and the submit patience from
    /// `MULTIPROC_NATS_SUBMIT_PATIENCE` (seconds).
    ///
    /// ```
    /// use multiproc_nats::{BrokerConfig, ClientConfig, QueueConfig};
    /// use std::time::Duration;
    ///
    /// let c = ClientConfig::from_env()?; // MULTIPROC_NATS_URL, _POOL, _RESULT_DEADLINE, ...
    /// # drop(c);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn from_env() -> Result<ClientConfig, ConfigError> {
        let mut c = ClientConfig::new(BrokerConfig::from_env()?).queue(QueueConfig::from_env()?);
        if let Ok(s) = std::env::var(RESULT_DEADLINE_ENV) {
            c = c.result_deadline(parse_seconds(RESULT_DEADLINE_ENV, &s)?);
        }
        if let Ok(s) = std::env::var(SUBMIT_PATIENCE_ENV) {
            c = c.submit_patience(parse_seconds(SUBMIT_PATIENCE_ENV, &s)?);
        }
        Ok(c)
    }

    /// How long a task may go without its outcome, from submission, before it fails
    /// with [`RemoteError::Deadline`] (no deadline by default: a task may queue and run
    /// as long as it takes). Set it when the caller must not wait forever for a result
    /// that may never come: no worker of this build serving the pool, a result lost with
    /// a client unreachable for longer than the workers' patience. The task leaves the
    /// queue if it is still there; a worker that already runs it finishes, unheard.
    ///
    /// ```
    /// use multiproc_nats::{BrokerConfig, ClientConfig, QueueConfig};
    /// use std::time::Duration;
    ///
    /// let c = ClientConfig::from_env()?.result_deadline(Duration::from_secs(3600));
    /// # drop(c);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn result_deadline(mut self, d: Duration) -> ClientConfig {
        self.result_deadline = Some(d);
        self
    }

    /// Submits to this pool's queue (its settings apply if this client creates it).
    ///
    /// ```
    /// use multiproc_nats::{BrokerConfig, ClientConfig, QueueConfig};
    /// use std::time::Duration;
    ///
    /// let c = ClientConfig::from_env()?.queue(QueueConfig::default().pool("render")?);
    /// # drop(c);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn queue(mut self, queue: QueueConfig) -> ClientConfig {
        self.queue = queue;
        self
    }

    /// How long a task may wait for the broker to take it (while it is unreachable or
    /// restarting) before it fails with [`RemoteError::Broker`] (default 60 s).
    ///
    /// ```
    /// use multiproc_nats::{BrokerConfig, ClientConfig, QueueConfig};
    /// use std::time::Duration;
    ///
    /// let c = ClientConfig::from_env()?.submit_patience(Duration::from_secs(10));
    /// # drop(c);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn submit_patience(mut self, d: Duration) -> ClientConfig {
        self.submit_patience = d;
        self
    }
}

/// A task ready to travel: its function's code, its encoded argument, its time limit.
///
/// ```
/// use multiproc_nats::RawTask;
/// use std::time::Duration;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let task = RawTask::new(square, &7u64)?.timeout(Duration::from_secs(5)).retries(1);
/// assert!(task.function_name().ends_with("square"));
/// # Ok::<(), multiproc::CodecError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RawTask {
    code: multiproc::remote::TaskCode,
    arg: Vec<u8>,
    timeout: Option<Duration>,
    retries: u32,
}

impl RawTask {
    /// The task `f(arg)`. `f` is a fn item, a non-capturing closure or a fn pointer, as
    /// for `multiproc::Process`; fails if `arg` does not serialize.
    ///
    /// ```
    /// use multiproc_nats::RawTask;
    /// use std::time::Duration;
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let t = RawTask::new(square, &3u64)?;
    /// assert!(t.function_name().contains("square"));
    /// # Ok::<(), multiproc::CodecError>(())
    /// ```
    pub fn new<F, A, R>(f: F, arg: &A) -> Result<RawTask, multiproc::CodecError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let mut bytes = Vec::new();
        multiproc::remote::encode_value(arg, &mut bytes)?;
        Ok(RawTask::from_code(multiproc::remote::task_code(f), bytes))
    }

    /// A task from its code and its already encoded argument.
    pub fn from_code(code: multiproc::remote::TaskCode, arg: Vec<u8>) -> RawTask {
        RawTask { code, arg, timeout: None, retries: 0 }
    }

    /// Gives the task a time limit: the worker kills the process running it at the
    /// limit, and the task fails with [`RemoteError::Timeout`].
    ///
    /// ```
    /// use multiproc_nats::RawTask;
    /// use std::time::Duration;
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let t = RawTask::new(square, &3u64)?.timeout(Duration::from_secs(60));
    /// # drop(t);
    /// # Ok::<(), multiproc::CodecError>(())
    /// ```
    pub fn timeout(mut self, limit: Duration) -> RawTask {
        self.timeout = Some(limit);
        self
    }

    /// Runs the task again, up to `n` times, when the process running it dies (on a
    /// worker with a [`PoolRunner`](crate::PoolRunner)).
    ///
    /// ```
    /// use multiproc_nats::RawTask;
    /// use std::time::Duration;
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let t = RawTask::new(square, &3u64)?.retries(2);
    /// # drop(t);
    /// # Ok::<(), multiproc::CodecError>(())
    /// ```
    pub fn retries(mut self, n: u32) -> RawTask {
        self.retries = n;
        self
    }

    /// The task's function name.
    ///
    /// ```
    /// use multiproc_nats::RawTask;
    /// use std::time::Duration;
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// println!("{}", RawTask::new(square, &3u64)?.function_name());
    /// # Ok::<(), multiproc::CodecError>(())
    /// ```
    pub fn function_name(&self) -> &'static str {
        self.code.function_name
    }

    fn into_items(self) -> ItemsTask {
        let mut args = Vec::with_capacity(self.arg.len() + 4);
        push_item(&mut args, &self.arg);
        ItemsTask { code: self.code, items: 1, chunk: 1, args, timeout: self.timeout, retries: self.retries }
    }
}

/// A task of several items, as a pool's batch makes it.
pub(crate) struct ItemsTask {
    pub(crate) code: multiproc::remote::TaskCode,
    pub(crate) items: u32,
    pub(crate) chunk: u32,
    /// The items, each a `u32` length and the encoded argument.
    pub(crate) args: Vec<u8>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: u32,
}

/// Hears each item's outcome once: `(item, outcome, where it ran, which delivery)`.
pub(crate) type OnItem = Box<dyn FnMut(u32, Result<&[u8], RemoteError>, Option<&RanOn>, u64) + Send>;

/// A task's end: its encoded result or why there is none, and where it ran.
///
/// ```no_run
/// use multiproc_nats::{Client, ClientConfig, RawTask};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let client = Client::connect(ClientConfig::from_env()?)?; // MULTIPROC_NATS_URL
/// let outcome = client.submit(RawTask::new(square, &7u64)?)?.wait();
/// match outcome.decode::<u64>() {
///     Ok(v) => println!("{v}, from {:?}, delivery {}", outcome.ran_on, outcome.delivery),
///     Err(failure) => println!("{failure}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// The task's id within this client.
    pub id: u64,
    /// The task's function.
    pub function: &'static str,
    /// The encoded result, or why there is none.
    pub result: Result<Vec<u8>, TaskFailure>,
    /// The worker that produced the outcome (none when no worker did).
    pub ran_on: Option<RanOn>,
    /// Which delivery of the task produced it (1 for the first; 0 when none did).
    pub delivery: u64,
}

impl TaskOutcome {
    /// Decodes the result as an `R`.
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// let outcome = client.submit(RawTask::new(square, &3u64)?)?.wait();
    /// let v: u64 = outcome.decode()?;
    /// assert_eq!(v, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode<R: DeserializeOwned>(&self) -> Result<R, TaskFailure> {
        match &self.result {
            Ok(bytes) => multiproc::remote::decode_value(bytes)
                .map_err(|e| self.failure(RemoteError::Codec { message: e.to_string() })),
            Err(e) => Err(e.clone()),
        }
    }

    fn failure(&self, error: RemoteError) -> TaskFailure {
        TaskFailure { id: self.id, function: self.function.to_string(), error }
    }
}

/// The result of one submitted task, to wait for.
///
/// ```no_run
/// use multiproc_nats::{Client, ClientConfig, RawTask};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let client = Client::connect(ClientConfig::from_env()?)?; // MULTIPROC_NATS_URL
/// use std::time::Duration;
/// let handle = client.submit(RawTask::new(square, &7u64)?)?;
/// match handle.wait_timeout(Duration::from_secs(30)) {
///     Ok(outcome) => println!("task {} gave {:?}", outcome.id, outcome.decode::<u64>()),
///     Err(still_running) => println!("task {} still runs", still_running.id()),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TaskHandle {
    id: u64,
    slot: Arc<OutcomeSlot>,
}

#[derive(Debug, Default)]
struct OutcomeSlot {
    value: Mutex<Option<TaskOutcome>>,
    ready: Condvar,
}

impl OutcomeSlot {
    fn put(&self, outcome: TaskOutcome) {
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        self.ready.notify_all();
    }
}

impl TaskHandle {
    /// The task's id within its client.
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// let h = client.submit(RawTask::new(square, &3u64)?)?;
    /// println!("task {}", h.id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the outcome is there.
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// let h = client.submit(RawTask::new(square, &3u64)?)?;
    /// if !h.is_ready() { println!("still running"); }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_ready(&self) -> bool {
        self.slot.value.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Waits for the outcome.
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// let outcome = client.submit(RawTask::new(square, &3u64)?)?.wait();
    /// assert_eq!(outcome.decode::<u64>()?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(self) -> TaskOutcome {
        let mut v = self.slot.value.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(o) = v.take() {
                return o;
            }
            v = self.slot.ready.wait(v).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits up to `timeout` for the outcome; gives the handle back if it is not there.
    /// The task goes on either way.
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// use std::time::Duration;
    /// let h = client.submit(RawTask::new(square, &3u64)?)?;
    /// if let Ok(outcome) = h.wait_timeout(Duration::from_secs(10)) { println!("{:?}", outcome.ran_on); }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(self, timeout: Duration) -> Result<TaskOutcome, TaskHandle> {
        let deadline = Instant::now() + timeout;
        {
            let mut v = self.slot.value.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(o) = v.take() {
                    return Ok(o);
                }
                let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
                v = self.slot.ready.wait_timeout(v, left).unwrap_or_else(|e| e.into_inner()).0;
            }
        }
        Err(self)
    }
}

/// What a client has seen so far.
///
/// ```no_run
/// use multiproc_nats::{Client, ClientConfig, RawTask};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let client = Client::connect(ClientConfig::from_env()?)?; // MULTIPROC_NATS_URL
/// let _ = client.submit(RawTask::new(square, &7u64)?)?.wait();
/// let stats = client.stats();
/// println!("{} submitted, {} finished, {} duplicates dropped", stats.submitted, stats.finished, stats.duplicates);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Tasks submitted.
    pub submitted: u64,
    /// Tasks with an outcome (a result or a failure).
    pub finished: u64,
    /// Results dropped because their task already had one (a redelivered task that ran twice).
    pub duplicates: u64,
    /// Publications retried because the broker did not confirm them (it was restarting, say).
    pub republished: u64,
    /// Tasks the broker gave up on after `max_deliver` deliveries.
    pub lost: u64,
    /// Tasks failed because their result deadline passed.
    pub past_deadline: u64,
}

struct Waiting {
    on_item: OnItem,
    /// Which items have their outcome.
    seen: Vec<bool>,
    left: u32,
    /// The task's sequence number in the stream, once the broker confirmed it.
    seq: Option<u64>,
    /// The object holding the task's items, when they were too large for its message:
    /// deleted once every item has its outcome.
    object: Option<String>,
}

type Entry = Arc<Mutex<Waiting>>;

#[derive(Default)]
struct Book {
    waiting: HashMap<u64, Entry>,
    by_seq: HashMap<u64, u64>,
    /// When each task's result deadline passes, soonest first (finished tasks stay
    /// until then).
    deadlines: BTreeSet<(Instant, u64)>,
}

impl Book {
    /// The tasks whose deadline passed by `now` and that still wait.
    fn past_deadline(&mut self, now: Instant) -> Vec<u64> {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            if self.waiting.contains_key(&id) {
                due.push(id);
            }
        }
        due
    }
}

struct Shared {
    id: String,
    reply_to: String,
    fingerprint: u64,
    next_id: AtomicU64,
    book: Mutex<Book>,
    stats: Mutex<ClientStats>,
    closed: AtomicBool,
    /// Objects to delete, for the client's deleter (see [`delete_objects`]).
    deletions: tokio::sync::mpsc::UnboundedSender<Deletion>,
    /// Whether a closing client looks for objects of its own left in the object store:
    /// it stored or read one, or closes with tasks in flight (whose results may come as
    /// objects).
    sweep_objects: AtomicBool,
    /// This client's number among the clients of this process ([`RUNTIME_OF`]).
    number: u64,
}

/// Clients of this process made so far: each numbers its runtime's threads.
static CLIENTS_MADE: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// On a thread of a client's runtime (where its results are delivered and callbacks
    /// run), that client's number; 0 elsewhere.
    static RUNTIME_OF: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// What the client's deleter of objects is asked.
enum Deletion {
    /// Delete this object.
    Object(String),
    /// Say when every deletion asked before is done.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Hands each of a task's item outcomes to a callback: `(items, each)`.
type EachItem<'a> = &'a mut dyn FnMut(u32, Result<&[u8], RemoteError>);

impl Shared {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stat(&self, f: impl FnOnce(&mut ClientStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Ends items of task `id`: `outcomes(items, each)` calls `each` for each item it
    /// has. An item that already had its outcome is skipped, so a redelivered task's
    /// results count once; a message that brings nothing new is a duplicate. Returns
    /// whether something was new.
    fn finish_items(
        &self,
        id: u64,
        ran_on: Option<&RanOn>,
        delivery: u64,
        outcomes: impl FnOnce(u32, EachItem<'_>),
    ) -> bool {
        let entry = self.book().waiting.get(&id).cloned();
        let Some(entry) = entry else {
            self.stat(|s| s.duplicates += 1);
            return false;
        };
        let mut w = entry.lock().unwrap_or_else(|e| e.into_inner());
        let mut new = 0u32;
        let Waiting { seen, left, on_item, seq, object } = &mut *w;
        let items = seen.len() as u32;
        outcomes(items, &mut |k, outcome| {
            if let Some(s) = seen.get_mut(k as usize)
                && !*s
            {
                *s = true;
                *left -= 1;
                new += 1;
                if *left == 0 {
                    // Counted before the last outcome is handed out: whoever sees it
                    // sees the task finished in the statistics too.
                    let mut book = self.book();
                    book.waiting.remove(&id);
                    if let Some(seq) = seq {
                        book.by_seq.remove(seq);
                    }
                    drop(book);
                    // Its items are read (or will never be): the object goes.
                    if let Some(name) = object.take() {
                        let _ = self.deletions.send(Deletion::Object(name));
                    }
                    self.stat(|s| s.finished += 1);
                }
                on_item(k, outcome, ran_on, delivery);
            }
        });
        if new == 0 {
            self.stat(|s| s.duplicates += 1);
        }
        new > 0
    }

    /// Ends every item of task `id` that has no outcome yet with `error`.
    fn fail_task(&self, id: u64, error: RemoteError, ran_on: Option<&RanOn>, delivery: u64) -> bool {
        self.finish_items(id, ran_on, delivery, |items, each| {
            for k in 0..items {
                each(k, Err(error.clone()));
            }
        })
    }
}

/// A connection to a pool's queue that submits tasks and collects their results.
///
/// It owns a small runtime for the broker's client; its calls block or return at once,
/// and callbacks given to [`submit_with`](Client::submit_with) run on its thread (they
/// must not block). Dropping it closes it.
///
/// ```no_run
/// use multiproc_nats::{Client, ClientConfig, RawTask};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let client = Client::connect(ClientConfig::from_env()?)?; // MULTIPROC_NATS_URL
/// let handle = client.submit(RawTask::new(square, &7u64)?)?;
/// let outcome = handle.wait();
/// assert_eq!(outcome.decode::<u64>()?, 49);
/// println!("ran on {:?}", outcome.ran_on);
/// client.close();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Client {
    rt: Option<tokio::runtime::Runtime>,
    nats: async_nats::Client,
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    results: jetstream::stream::Stream,
    objects: Objects,
    queue: QueueConfig,
    patience: Duration,
    deadline: Option<Duration>,
    shared: Arc<Shared>,
    publish_slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("id", &self.shared.id).field("pool", &self.queue.pool).finish()
    }
}

impl Client {
    /// Whether this is a thread of this client's runtime, where its results are delivered
    /// (and a callback runs): a wait here for one of its results could never end.
    pub(crate) fn delivers_on_this_thread(&self) -> bool {
        RUNTIME_OF.get() == self.shared.number
    }

    /// Connects, and finds or creates the pool's queue. Works inside a tokio runtime
    /// too (the connection is then made on a helper thread, the caller's thread waiting).
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// println!("connected as {}", client.id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect(config: ClientConfig) -> Result<Client, ClusterError> {
        crate::blocking::outside_runtime(move || Client::connect_here(config))
    }

    fn connect_here(config: ClientConfig) -> Result<Client, ClusterError> {
        let number = CLIENTS_MADE.fetch_add(1, Ordering::Relaxed);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("multiproc-nats-client")
            .on_thread_start(move || RUNTIME_OF.set(number))
            .enable_all()
            .build()?;
        let id = broker::random_id();
        let (deletions, asked) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            reply_to: config.queue.result_subject(&id),
            id,
            fingerprint: multiproc::remote::fingerprint(),
            next_id: AtomicU64::new(1),
            book: Mutex::new(Book::default()),
            stats: Mutex::new(ClientStats::default()),
            closed: AtomicBool::new(false),
            deletions,
            sweep_objects: AtomicBool::new(false),
            number,
        });
        let mut config = config;
        let (nats, js, stream, results, objects) = rt.block_on(async {
            let name = format!("multiproc-nats client {}", shared.id);
            let nats = broker::connect(&config.broker, name, |_| {}).await?;
            let js = jetstream::new(nats.clone());
            let clustered = nats.server_info().cluster.is_some();
            let stream = broker::task_stream(&js, &mut config.queue, clustered).await?;
            broker::worker_consumer(&stream, &config.queue, shared.fingerprint).await?;
            let results = broker::result_stream(&js, &config.queue).await?;
            let objects = objects::bucket(&js, &config.queue, nats.server_info().max_payload).await?;
            tokio::spawn(delete_objects(objects.clone(), asked));
            start_background(&shared, &nats, &js, &stream, &results, &objects, &config).await?;
            Ok::<_, ClusterError>((nats, js, stream, results, objects))
        })?;
        let queue = config.queue.clone();
        Ok(Client {
            rt: Some(rt),
            nats,
            js,
            stream,
            results,
            objects,
            queue,
            patience: config.submit_patience,
            deadline: config.result_deadline,
            shared,
            publish_slots: Arc::new(tokio::sync::Semaphore::new(512)),
        })
    }

    /// Submits `task`; `on_done` gets its outcome, exactly once, on the client's thread
    /// (or on this thread, for a task that fails before leaving). Returns the task's id.
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// let id = client.submit_with(RawTask::new(square, &3u64)?, |outcome| println!("{:?}", outcome.decode::<u64>()))?;
    /// println!("task {id} submitted");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit_with(
        &self,
        task: RawTask,
        on_done: impl FnOnce(TaskOutcome) + Send + 'static,
    ) -> Result<u64, ClusterError> {
        let id = self.new_task_id();
        let function = task.code.function_name;
        let mut on_done = Some(on_done);
        let on_item: OnItem = Box::new(move |_, outcome, ran_on, delivery| {
            let result =
                outcome.map(<[u8]>::to_vec).map_err(|error| TaskFailure { id, function: function.to_string(), error });
            if let Some(f) = on_done.take() {
                f(TaskOutcome { id, function, result, ran_on: ran_on.cloned(), delivery });
            }
        });
        self.submit_items(id, task.into_items(), on_item)?;
        Ok(id)
    }

    /// A fresh task id, for [`submit_items`](Client::submit_items).
    pub(crate) fn new_task_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The largest message the broker takes.
    pub(crate) fn max_payload(&self) -> usize {
        self.nats.server_info().max_payload
    }

    /// Submits a task of several items as task `id`; `on_item` hears each item's
    /// outcome exactly once, on the client's thread (or on this one, for a task that
    /// fails before leaving).
    pub(crate) fn submit_items(&self, id: u64, task: ItemsTask, on_item: OnItem) -> Result<(), ClusterError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(ClusterError::Closed("client"));
        }
        let items = task.items;
        let (payload, upload) = self.task_message(id, task);
        let object = upload.as_ref().map(|(name, _)| name.clone());
        let waiting = Waiting { on_item, seen: vec![false; items as usize], left: items, seq: None, object };
        {
            let mut book = self.shared.book();
            // Checked again under the book's lock: `close` sets the flag and then takes
            // the waiting tasks under this lock, so a task is either refused here or
            // among those `close` fails, never waiting on a closed client.
            if self.shared.closed.load(Ordering::SeqCst) {
                return Err(ClusterError::Closed("client"));
            }
            book.waiting.insert(id, Arc::new(Mutex::new(waiting)));
            if let Some(d) = self.deadline {
                book.deadlines.insert((Instant::now() + d, id));
            }
        }
        self.shared.stat(|s| s.submitted += 1);
        // Headers (the message id) take a few dozen bytes of the broker's limit too.
        let max = self.max_payload() as u64;
        let len = payload.len() as u64 + HEADER_ROOM as u64;
        if max > 0 && len > max {
            self.shared.fail_task(id, RemoteError::TooLarge { len, max }, None, 0);
            return Ok(());
        }
        let rt = self.rt.as_ref().expect("a client has its runtime until dropped");
        let link = Link {
            shared: self.shared.clone(),
            js: self.js.clone(),
            stream: self.stream.clone(),
            objects: self.objects.clone(),
            slots: self.publish_slots.clone(),
            patience: self.patience,
        };
        let subject = self.queue.task_subject(self.shared.fingerprint);
        rt.spawn(publish(link, Outgoing { subject, id, payload, upload }));
        Ok(())
    }

    /// Task `id`'s message, and the object to store before it when its items are too
    /// large for one message: that message then names the object and carries no items.
    fn task_message(&self, id: u64, task: ItemsTask) -> (Bytes, Option<(String, Bytes)>) {
        let mut head = TaskHead {
            version: PROTOCOL,
            task_id: id,
            reply_to: self.shared.reply_to.clone(),
            fingerprint: self.shared.fingerprint,
            function: task.code.function,
            trampoline: task.code.trampoline,
            function_name: task.code.function_name.to_string(),
            timeout_ms: task.timeout.map(|t| t.as_millis().min(u64::MAX as u128) as u64),
            retries: task.retries,
            items: task.items,
            chunk: task.chunk,
            args_object: None,
        };
        let mut message = head.encode(&[]);
        let max = self.max_payload();
        if max == 0 || message.len() + task.args.len() + HEADER_ROOM <= max {
            message.extend_from_slice(&task.args);
            return (Bytes::from(message), None);
        }
        let name = objects::args_object(&self.shared.id, id);
        head.args_object = Some(name.clone());
        (Bytes::from(head.encode(&[])), Some((name, Bytes::from(task.args))))
    }

    /// Stops waiting for tasks `ids`: their items without an outcome get `error`, and
    /// those still queued are removed from the queue (best effort).
    pub(crate) fn abandon(&self, ids: &[u64], error: &RemoteError) {
        let mut seqs = Vec::new();
        for &id in ids {
            let entry = self.shared.book().waiting.get(&id).cloned();
            seqs.extend(entry.and_then(|e| e.lock().unwrap_or_else(|e| e.into_inner()).seq));
            self.shared.fail_task(id, error.clone(), None, 0);
        }
        self.delete_queued(seqs, false);
    }

    /// Removes messages from the queue, in the background; on closing (`closing`), also
    /// this client's results consumer, any result still stored for it and its objects,
    /// and waits for that (never on the client's own thread).
    fn delete_queued(&self, seqs: Vec<u64>, closing: bool) {
        let Some(rt) = &self.rt else { return };
        if seqs.is_empty() && !closing {
            return;
        }
        let (stream, results) = (self.stream.clone(), self.results.clone());
        let (consumer, subject) = (self.queue.result_consumer(&self.shared.id), self.shared.reply_to.clone());
        let (shared, objects) = (self.shared.clone(), self.objects.clone());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let limit = Duration::from_secs(2);
            for seq in seqs {
                let _ = tokio::time::timeout(limit, stream.delete_message(seq)).await;
            }
            if closing {
                let _ = tokio::time::timeout(limit, results.delete_consumer(&consumer)).await;
                let _ = tokio::time::timeout(limit, results.purge().filter(subject)).await;
                delete_own_objects(&shared, &objects).await;
            }
            let _ = done_tx.send(());
        });
        if closing && tokio::runtime::Handle::try_current().is_err() {
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Submits `task` and returns a handle to wait for its outcome.
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// let h = client.submit(RawTask::new(square, &3u64)?)?;
    /// assert_eq!(h.wait().decode::<u64>()?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit(&self, task: RawTask) -> Result<TaskHandle, ClusterError> {
        let slot = Arc::new(OutcomeSlot::default());
        let filler = slot.clone();
        let id = self.submit_with(task, move |o| filler.put(o))?;
        Ok(TaskHandle { id, slot })
    }

    /// Submits `tasks` lazily, keeping at most `window` of them submitted and not yet
    /// handed out by the iterator, and yields their outcomes: in input order when
    /// `ordered`, else as they finish. An endless iterator works in bounded memory.
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// let tasks = (0..100u64).map(|x| RawTask::new(square, &x).unwrap());
    /// let total: u64 = client.imap(tasks, 16, false).map(|o| o.decode::<u64>().unwrap()).sum();
    /// println!("{total}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap<I>(&self, tasks: I, window: usize, ordered: bool) -> Outcomes<'_, I::IntoIter>
    where
        I: IntoIterator<Item = RawTask>,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        Outcomes {
            client: self,
            input: tasks.into_iter(),
            exhausted: false,
            window: window.max(1),
            ordered,
            tx,
            rx,
            submitted: 0,
            yielded: 0,
            in_flight: 0,
            finished: BTreeMap::new(),
        }
    }

    /// How many tasks have no outcome yet.
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// let _h = client.submit(RawTask::new(square, &3u64)?)?;
    /// println!("{} outstanding", client.outstanding());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn outstanding(&self) -> usize {
        self.shared.book().waiting.len()
    }

    /// What the client has seen so far.
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// println!("{:?}", client.stats());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> ClientStats {
        *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pool's queue now, as the broker sees it: tasks on the queue, and per build
    /// (this client's is [`fingerprint`](multiproc::remote::fingerprint)) how many wait,
    /// how many are in workers' hands, how many were handed out again, and how many pull
    /// requests its workers have open. Not from a callback (it blocks on the client's
    /// thread).
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// println!("{}", client.status()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn status(&self) -> Result<QueueStatus, ClusterError> {
        let rt = self.rt.as_ref().expect("a client has its runtime until dropped");
        let (js, mut stream, queue) = (self.js.clone(), self.stream.clone(), self.queue.clone());
        crate::blocking::outside_runtime(|| {
            rt.block_on(async move { crate::status::queue_status(&js, &mut stream, &queue).await })
        })
    }

    /// This client's id: its results come on the pool's subject `results.<id>`.
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// println!("results come to this client as {}", client.id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Closes the client: every task without an outcome fails with
    /// [`RemoteError::Closed`], and those still queued are removed from the queue (best
    /// effort: one a worker already runs finishes there, unheard).
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// client.close(); // later submissions fail with ClusterError::Closed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let (ids, seqs): (Vec<u64>, Vec<u64>) = {
            let book = self.shared.book();
            (book.waiting.keys().copied().collect(), book.by_seq.keys().copied().collect())
        };
        if !ids.is_empty() {
            self.shared.sweep_objects.store(true, Ordering::SeqCst);
        }
        for id in ids {
            self.shared.fail_task(id, RemoteError::Closed, None, 0);
        }
        self.delete_queued(seqs, true);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// What a client's publications need of it.
struct Link {
    shared: Arc<Shared>,
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    objects: Objects,
    slots: Arc<tokio::sync::Semaphore>,
    patience: Duration,
}

/// A task on its way to the queue: its message, and the object to store before it (name
/// and bytes) when its items are too large for the message.
struct Outgoing {
    subject: String,
    id: u64,
    payload: Bytes,
    upload: Option<(String, Bytes)>,
}

/// Puts one task on the queue (its items in the object store first, when they travel
/// there), retrying until the broker confirms it (it may be restarting) or `patience`
/// runs out. The message id makes a retried publication that did reach the stream a
/// duplicate the broker drops.
async fn publish(link: Link, task: Outgoing) {
    let Link { shared, js, stream, objects, slots, patience } = link;
    let Outgoing { subject, id, payload, upload } = task;
    let Ok(_permit) = slots.acquire_owned().await else { return };
    let msg_id = format!("{}-{id}", shared.id);
    let started = Instant::now();
    if let Some((name, bytes)) = upload
        && !upload_items(&shared, &objects, id, &name, &bytes, started + patience).await
    {
        return;
    }
    let mut backoff = Duration::from_millis(50);
    loop {
        // Closed or abandoned while waiting for the broker: nothing to send.
        if shared.closed.load(Ordering::SeqCst) || !shared.book().waiting.contains_key(&id) {
            return;
        }
        let message = PublishMessage::build().payload(payload.clone()).message_id(&msg_id);
        let sent = match js.send_publish(subject.clone(), message).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(ack) => return note_sequence(&shared, &stream, id, ack.sequence).await,
            Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                let error = RemoteError::TooLarge { len: payload.len() as u64, max: 0 };
                shared.fail_task(id, error, None, 0);
                return;
            }
            Err(e) => {
                if started.elapsed() >= patience {
                    shared.fail_task(id, RemoteError::Broker { message: e.to_string() }, None, 0);
                    return;
                }
                shared.stat(|s| s.republished += 1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// The broker stored task `id` at `sequence`: noted, to find it again; a task abandoned
/// (or closed) meanwhile is taken back off the queue.
async fn note_sequence(shared: &Shared, stream: &jetstream::stream::Stream, id: u64, sequence: u64) {
    // The entry's lock first, then the book's, as everywhere.
    let entry = shared.book().waiting.get(&id).cloned();
    match entry {
        Some(entry) => {
            let mut w = entry.lock().unwrap_or_else(|e| e.into_inner());
            if w.left > 0 {
                w.seq = Some(sequence);
                shared.book().by_seq.insert(sequence, id);
            }
        }
        None => {
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.delete_message(sequence)).await;
        }
    }
}

/// Stores task `id`'s items as object `name`, before its message goes. False when the
/// task failed for it, or no longer waits: settled while its items were being stored,
/// its deletion may have come first, so the object is deleted again here.
async fn upload_items(
    shared: &Shared,
    objects: &Objects,
    id: u64,
    name: &str,
    bytes: &[u8],
    deadline: Instant,
) -> bool {
    shared.sweep_objects.store(true, Ordering::SeqCst);
    if let Err(error) = objects.put(name, bytes, deadline).await {
        shared.fail_task(id, error, None, 0);
        return false;
    }
    if shared.closed.load(Ordering::SeqCst) || !shared.book().waiting.contains_key(&id) {
        objects.delete(name).await;
        return false;
    }
    true
}

/// Deletes the objects it is asked to, in order (see [`Deletion`]).
async fn delete_objects(objects: Objects, mut asked: tokio::sync::mpsc::UnboundedReceiver<Deletion>) {
    while let Some(deletion) = asked.recv().await {
        match deletion {
            Deletion::Object(name) => objects.delete(&name).await,
            Deletion::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// On closing: lets the deletions asked so far finish, then deletes whatever objects of
/// this client are left (results stored for tasks it no longer waits for), when it may
/// have any.
async fn delete_own_objects(shared: &Shared, objects: &Objects) {
    let (done, flushed) = tokio::sync::oneshot::channel();
    if shared.deletions.send(Deletion::Flush(done)).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(5), flushed).await;
    }
    if shared.sweep_objects.load(Ordering::SeqCst) {
        objects.delete_all_of(&format!("{}-", shared.id)).await;
    }
}

/// Takes this client's results from the pool's result stream, ends their tasks
/// (dropping duplicates), and acks each once recorded. Its consumer outlives a
/// disconnection; one the broker removed meanwhile (unused for the client lease) is made
/// again, and finds every result still stored.
async fn collect_results(
    shared: Arc<Shared>,
    results: jetstream::stream::Stream,
    objects: Objects,
    queue: QueueConfig,
) {
    while !shared.closed.load(Ordering::SeqCst) {
        let consumer = match broker::result_consumer(&results, &queue, &shared.id).await {
            Ok(consumer) => consumer,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        take_results(&shared, &objects, &consumer).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Takes results through `consumer` until it is gone (or the client closed).
async fn take_results(shared: &Shared, objects: &Objects, consumer: &jetstream::consumer::PullConsumer) {
    let Ok(mut messages) = consumer.stream().heartbeat(Duration::from_secs(2)).messages().await else { return };
    while let Some(msg) = messages.next().await {
        match msg {
            Ok(msg) => {
                record_result(shared, objects, &msg.payload).await;
                let _ = msg.ack().await;
            }
            // A missed heartbeat (the link is down) or a refused pull: go on while the
            // consumer is there, else make it again.
            Err(_) => {
                let mut consumer = consumer.clone();
                if shared.closed.load(Ordering::SeqCst) || consumer.info().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Ends the items a result message brings (an unreadable one ends nothing).
async fn record_result(shared: &Shared, objects: &Objects, payload: &[u8]) {
    let Ok((head, rest)) = ResultHead::decode(payload) else { return };
    if head.version != PROTOCOL {
        return;
    }
    match &head.outcome {
        Outcome::Items { first, count } => finish_entries(shared, &head, *first, *count, rest),
        Outcome::Failed(e) => {
            shared.fail_task(head.task_id, e.clone(), Some(&head.ran_on), head.delivery);
        }
        Outcome::InObject { first, count, object } => {
            shared.sweep_objects.store(true, Ordering::SeqCst);
            if !shared.book().waiting.contains_key(&head.task_id) {
                // A duplicate (counted as one first): its object goes unread.
                let _ = shared.finish_items(head.task_id, None, head.delivery, |_, _| {});
                return objects.delete(object).await;
            }
            // Deleted before it is handed out: whoever sees the result finds it gone.
            let read = read_object(objects, object).await;
            objects.delete(object).await;
            match read {
                Ok(body) => finish_entries(shared, &head, *first, *count, &body),
                Err(error) => {
                    shared.finish_items(head.task_id, Some(&head.ran_on), head.delivery, |_, each| {
                        (*first..first + count).for_each(|k| each(k, Err(error.clone())));
                    });
                }
            }
        }
    }
}

/// Ends items `first..first + count` of a result with the entries in `body`.
fn finish_entries(shared: &Shared, head: &ResultHead, first: u32, count: u32, body: &[u8]) {
    shared.finish_items(head.task_id, Some(&head.ran_on), head.delivery, |_, each| {
        let whole = for_each_entry(body, count, |k, outcome| each(first + k, outcome));
        for k in whole..count {
            let message = "the worker's result message is cut short".to_string();
            each(first + k, Err(RemoteError::Codec { message }));
        }
    });
}

/// Reads a result's object, trying again a few times while the broker cannot give it
/// (one that is not there fails at once).
async fn read_object(objects: &Objects, name: &str) -> Result<Vec<u8>, RemoteError> {
    let mut tries = 0;
    loop {
        match objects.get(name).await {
            Fetch::Got(bytes) => return Ok(bytes),
            Fetch::Failed(error) => return Err(error),
            Fetch::Retry(error) if tries >= 3 => return Err(error),
            Fetch::Retry(_) => tries += 1,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Answers workers asking whether this client is alive (one without a lease that
/// answers keeps its tasks).
async fn answer_probes(nats: async_nats::Client, mut probes: async_nats::Subscriber) {
    while let Some(msg) = probes.next().await {
        if let Some(reply) = msg.reply {
            let _ = nats.publish(reply, Bytes::new()).await;
        }
    }
}

/// The broker's word that it gave up on a task (`max_deliver` deliveries, each to a
/// worker that vanished): that task fails as `Lost`, and its message leaves the queue.
/// The broker keeps its word in the pool's stream of lost tasks, which this client reads
/// through an ordered consumer: one that resumes where it was after a disconnection, so
/// a client cut off when the word came still hears it.
async fn watch_advisories(
    shared: Arc<Shared>,
    stream: jetstream::stream::Stream,
    mut advisories: jetstream::consumer::pull::Ordered,
) {
    #[derive(serde::Deserialize)]
    struct MaxDeliveries {
        stream_seq: u64,
        deliveries: u64,
    }
    while let Some(msg) = advisories.next().await {
        // A gap or a lost link: the ordered consumer makes itself again and goes on.
        let Ok(msg) = msg else { continue };
        let Ok(advisory) = serde_json::from_slice::<MaxDeliveries>(&msg.payload) else { continue };
        let id = shared.book().by_seq.get(&advisory.stream_seq).copied();
        if let Some(id) = id {
            let _ = stream.delete_message(advisory.stream_seq).await;
            shared.stat(|s| s.lost += 1);
            shared.fail_task(id, RemoteError::Lost { deliveries: advisory.deliveries }, None, 0);
        }
    }
}

/// What runs behind a client, on its runtime: its lease, the collection of its results,
/// the broker's word on lost tasks, and deadlines. Returns once it is all in place.
async fn start_background(
    shared: &Arc<Shared>,
    nats: &async_nats::Client,
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    results: &jetstream::stream::Stream,
    objects: &Objects,
    config: &ClientConfig,
) -> Result<(), ClusterError> {
    let queue = &config.queue;
    let subscribe = |subject: String| async move {
        nats.subscribe(subject.clone())
            .await
            .map_err(|e| ClusterError::Setup { what: format!("a subscription to {subject}"), message: e.to_string() })
    };
    broker::lease_stream(js, queue).await?;
    let lease = queue.lease_subject(&shared.id);
    first_renewal(js, &lease).await?;
    tokio::spawn(keep_lease(shared.clone(), js.clone(), lease, queue.client_lease / 3));
    let probes = subscribe(queue.probe_subject(&shared.id)).await?;
    let advisories = broker::lost_tasks(js, queue, shared.fingerprint).await?;
    // The consumer exists before any task can be answered.
    broker::result_consumer(results, queue, &shared.id).await?;
    tokio::spawn(collect_results(shared.clone(), results.clone(), objects.clone(), queue.clone()));
    tokio::spawn(answer_probes(nats.clone(), probes));
    tokio::spawn(watch_advisories(shared.clone(), stream.clone(), advisories));
    if let Some(deadline) = config.result_deadline {
        tokio::spawn(enforce_deadlines(shared.clone(), stream.clone(), deadline));
    }
    // Make sure the subscriptions are in place before any task can be answered.
    nats.flush().await.map_err(|e| ClusterError::Setup { what: "a flush".into(), message: e.to_string() })
}

/// Renews this client's lease: a fresh message on its lease subject.
async fn renew(js: &jetstream::Context, lease: &str) -> Result<(), ClusterError> {
    publish_lease(js, lease)
        .await
        .map_err(|e| ClusterError::Setup { what: format!("the lease {lease}"), message: e.to_string() })
}

async fn publish_lease(js: &jetstream::Context, lease: &str) -> Result<(), jetstream::context::PublishError> {
    js.publish(lease.to_string(), Bytes::new()).await?.await.map(|_| ())
}

/// The lease's first message, just after its stream was made (or found). A stream that a
/// worker starting at the same moment has just made may not take messages yet: the
/// broker answers "no stream found" for a moment, so that answer is tried again, a few
/// times over about a second, before the client gives up.
async fn first_renewal(js: &jetstream::Context, lease: &str) -> Result<(), ClusterError> {
    for wait_ms in [10, 20, 40, 80, 160, 320, 640] {
        match publish_lease(js, lease).await {
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            }
            Ok(()) => return Ok(()),
            Err(_) => break,
        }
    }
    renew(js, lease).await
}

/// Renews this client's lease every `period` until it is closed; workers drop the tasks
/// of a client whose lease lapsed. A renewal that fails (the broker is away) is tried
/// again at the next.
async fn keep_lease(shared: Arc<Shared>, js: jetstream::Context, lease: String, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        let _ = renew(&js, &lease).await;
    }
}

/// Takes the tasks whose result `deadline` passed off the queue (if they are still
/// there), then fails them. Looks a few times per deadline (at most every second).
async fn enforce_deadlines(shared: Arc<Shared>, stream: jetstream::stream::Stream, deadline: Duration) {
    let mut tick = tokio::time::interval(deadline_period(deadline));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        let due = shared.book().past_deadline(Instant::now());
        for id in due {
            // The entry's lock first, then the book's, as everywhere.
            let entry = shared.book().waiting.get(&id).cloned();
            let seq = entry.and_then(|e| e.lock().unwrap_or_else(|e| e.into_inner()).seq);
            // Off the queue first: whoever hears of the deadline finds it gone.
            if let Some(seq) = seq {
                let _ = tokio::time::timeout(Duration::from_secs(2), stream.delete_message(seq)).await;
            }
            // Counted before its caller hears, as `finished` is.
            if shared.book().waiting.contains_key(&id) {
                shared.stat(|s| s.past_deadline += 1);
                shared.fail_task(id, RemoteError::Deadline { after: deadline }, None, 0);
            }
        }
    }
}

/// How often deadlines are looked at: ten times per deadline, between 10 ms and 1 s.
fn deadline_period(deadline: Duration) -> Duration {
    (deadline / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// The outcomes of [`Client::imap`], submitted lazily within a bounded window.
///
/// ```no_run
/// use multiproc_nats::{Client, ClientConfig, RawTask};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let client = Client::connect(ClientConfig::from_env()?)?; // MULTIPROC_NATS_URL
/// let tasks = (0..1000u64).map(|x| RawTask::new(square, &x).unwrap());
/// // At most 64 tasks submitted ahead of the consumer; outcomes in input order.
/// for outcome in client.imap(tasks, 64, true) {
///     let _square: u64 = outcome.decode()?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Outcomes<'c, I> {
    client: &'c Client,
    input: I,
    exhausted: bool,
    window: usize,
    ordered: bool,
    tx: std::sync::mpsc::Sender<(u64, TaskOutcome)>,
    rx: std::sync::mpsc::Receiver<(u64, TaskOutcome)>,
    submitted: u64,
    yielded: u64,
    in_flight: usize,
    finished: BTreeMap<u64, TaskOutcome>,
}

impl<I: Iterator<Item = RawTask>> Outcomes<'_, I> {
    /// How many tasks are submitted and not yet yielded (never more than the window).
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// let tasks = (0..10u64).map(|x| RawTask::new(square, &x).unwrap());
    /// let mut outcomes = client.imap(tasks, 4, true);
    /// let _first = outcomes.next();
    /// assert!(outcomes.in_window() <= 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_window(&self) -> usize {
        self.in_flight + self.finished.len()
    }

    fn top_up(&mut self) {
        while !self.exhausted && self.in_window() < self.window {
            let Some(task) = self.input.next() else {
                self.exhausted = true;
                break;
            };
            let index = self.submitted;
            self.submitted += 1;
            let function = task.function_name();
            let tx = self.tx.clone();
            match self.client.submit_with(task, move |o| {
                let _ = tx.send((index, o));
            }) {
                Ok(_) => self.in_flight += 1,
                Err(_) => {
                    let error = TaskFailure { id: 0, function: function.to_string(), error: RemoteError::Closed };
                    let outcome = TaskOutcome { id: 0, function, result: Err(error), ran_on: None, delivery: 0 };
                    self.finished.insert(index, outcome);
                }
            }
        }
    }

    fn take_ready(&mut self) -> Option<TaskOutcome> {
        if self.ordered {
            let o = self.finished.remove(&self.yielded)?;
            self.yielded += 1;
            Some(o)
        } else {
            self.finished.pop_first().map(|(_, o)| o)
        }
    }

    /// The next outcome, waiting at most `timeout`; `Err(())` if none came in time
    /// (the tasks go on), `Ok(None)` at the end.
    ///
    /// ```no_run
    /// use multiproc_nats::{Client, ClientConfig, RawTask};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let client = Client::connect(ClientConfig::from_env()?)?;
    /// use std::time::Duration;
    /// let tasks = (0..10u64).map(|x| RawTask::new(square, &x).unwrap());
    /// let mut outcomes = client.imap(tasks, 4, true);
    /// if let Ok(Some(o)) = outcomes.next_timeout(Duration::from_secs(30)) { println!("{:?}", o.decode::<u64>()); }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::result_unit_err)]
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<TaskOutcome>, ()> {
        self.next_until(Some(Instant::now() + timeout))
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Result<Option<TaskOutcome>, ()> {
        loop {
            self.top_up();
            if let Some(o) = self.take_ready() {
                return Ok(Some(o));
            }
            if self.in_flight == 0 {
                return Ok(None);
            }
            let received = match deadline {
                None => self.rx.recv().map_err(|_| ()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now()).ok_or(())?;
                    self.rx.recv_timeout(left).map_err(|_| ())
                }
            };
            // The sender lives in `self`, so only a timeout ends a wait without a value.
            let (index, outcome) = received?;
            self.in_flight -= 1;
            self.finished.insert(index, outcome);
        }
    }
}

impl<I: Iterator<Item = RawTask>> Iterator for Outcomes<'_, I> {
    type Item = TaskOutcome;

    fn next(&mut self) -> Option<TaskOutcome> {
        self.next_until(None).ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_pass_in_order_and_only_for_tasks_still_waiting() {
        let shared = shared();
        let _ = wait_for(&shared, 1, 1, None);
        let _ = wait_for(&shared, 2, 1, None);
        let now = Instant::now();
        let mut book = shared.book();
        book.deadlines.insert((now + Duration::from_secs(1), 1));
        book.deadlines.insert((now + Duration::from_secs(2), 2));
        book.deadlines.insert((now, 3)); // finished already: nothing to do
        assert_eq!(book.past_deadline(now), Vec::<u64>::new());
        assert_eq!(book.past_deadline(now + Duration::from_secs(1)), [1]);
        assert_eq!(book.past_deadline(now + Duration::from_secs(5)), [2]);
        assert!(book.deadlines.is_empty());
    }

    #[test]
    fn deadline_settings() {
        assert_eq!(deadline_period(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(deadline_period(Duration::from_millis(50)), Duration::from_millis(10));
        assert_eq!(parse_seconds("V", " 1.5 "), Ok(Duration::from_millis(1500)));
        for bad in ["soon", "-1", "NaN"] {
            let e = parse_seconds("V", bad).unwrap_err().to_string();
            assert!(e.contains(&format!("V={bad} is not a number of seconds")), "{e}");
        }
    }

    fn shared() -> Shared {
        Shared {
            id: "c".into(),
            reply_to: "mproc.t.results.c".into(),
            fingerprint: 1,
            next_id: AtomicU64::new(1),
            book: Mutex::new(Book::default()),
            stats: Mutex::new(ClientStats::default()),
            closed: AtomicBool::new(false),
            deletions: tokio::sync::mpsc::unbounded_channel().0,
            sweep_objects: AtomicBool::new(false),
            number: 0,
        }
    }

    type Seen = Arc<Mutex<Vec<(u32, Result<Vec<u8>, RemoteError>, u64)>>>;

    fn wait_for(shared: &Shared, id: u64, items: u32, seq: Option<u64>) -> Seen {
        let calls: Seen = Arc::default();
        let seen = calls.clone();
        let on_item: OnItem =
            Box::new(move |k, r, _, delivery| seen.lock().unwrap().push((k, r.map(<[u8]>::to_vec), delivery)));
        let waiting = Waiting { on_item, seen: vec![false; items as usize], left: items, seq, object: None };
        shared.book().waiting.insert(id, Arc::new(Mutex::new(waiting)));
        if let Some(seq) = seq {
            shared.book().by_seq.insert(seq, id);
        }
        calls
    }

    #[test]
    fn a_second_result_for_a_task_is_dropped_as_a_duplicate() {
        let shared = shared();
        let calls = wait_for(&shared, 7, 1, Some(70));
        let ran_on = RanOn { host: "h".into(), worker_pid: 1, process_pid: Some(2) };
        let one = |v: u8| move |_, each: EachItem<'_>| each(0, Ok(&[v][..]));
        assert!(shared.finish_items(7, Some(&ran_on), 1, one(1)));
        assert!(!shared.finish_items(7, Some(&ran_on), 2, one(2)), "the redelivered run's result is dropped");
        assert!(!shared.fail_task(8, RemoteError::Closed, None, 0), "an unknown id is dropped too");
        assert_eq!(*calls.lock().unwrap(), [(0, Ok(vec![1]), 1)]);
        let stats = *shared.stats.lock().unwrap();
        assert_eq!((stats.finished, stats.duplicates), (1, 2));
        assert!(shared.book().by_seq.is_empty(), "the stream sequence is forgotten with the task");
    }

    #[test]
    fn items_come_in_parts_and_a_redelivery_adds_only_what_is_missing() {
        let shared = shared();
        let calls = wait_for(&shared, 3, 4, None);
        // The first run sent items 0 and 1, then its worker vanished.
        assert!(shared.finish_items(3, None, 1, |_, each| {
            each(0, Ok(&[0][..]));
            each(1, Ok(&[1][..]));
        }));
        // The second run sends everything again, in two parts, and an out-of-range item.
        assert!(shared.finish_items(3, None, 2, |_, each| {
            each(0, Ok(&[9][..]));
            each(1, Ok(&[9][..]));
            each(2, Err(RemoteError::Codec { message: "x".into() }));
            each(7, Ok(&[9][..]));
        }));
        assert!(!shared.book().waiting.is_empty(), "item 3 is still to come");
        assert!(shared.finish_items(3, None, 2, |_, each| each(3, Ok(&[3][..]))));
        let got = calls.lock().unwrap().clone();
        assert_eq!(
            got,
            [
                (0, Ok(vec![0]), 1),
                (1, Ok(vec![1]), 1),
                (2, Err(RemoteError::Codec { message: "x".into() }), 2),
                (3, Ok(vec![3]), 2)
            ]
        );
        assert!(shared.book().waiting.is_empty());
        assert_eq!(shared.stats.lock().unwrap().finished, 1);
    }

    #[test]
    fn a_task_whose_items_are_in_an_object_asks_for_its_deletion_once_settled_and_only_then() {
        let (deletions, mut asked) = tokio::sync::mpsc::unbounded_channel();
        let shared = Shared { deletions, ..shared() };
        let _ = wait_for(&shared, 5, 2, None);
        let object = Some(objects::args_object(&shared.id, 5));
        shared.book().waiting[&5].lock().unwrap().object = object.clone();
        assert!(shared.finish_items(5, None, 1, |_, each| each(0, Ok(&[0][..]))));
        assert!(asked.try_recv().is_err(), "item 1 may still need the arguments");
        shared.fail_task(5, RemoteError::Closed, None, 0);
        match asked.try_recv() {
            Ok(Deletion::Object(name)) => assert_eq!(Some(name), object),
            _ => panic!("the settled task's object is to be deleted"),
        }
        assert!(asked.try_recv().is_err(), "once");
    }

    #[test]
    fn a_failure_names_the_task() {
        let shared = shared();
        let slot = Arc::new(OutcomeSlot::default());
        let filler = slot.clone();
        let mut on_done = Some(move |o| filler.put(o));
        let on_item: OnItem = Box::new(move |_, r, _, delivery| {
            let result =
                r.map(<[u8]>::to_vec).map_err(|error| TaskFailure { id: 3, function: "app::resize".into(), error });
            if let Some(f) = on_done.take() {
                f(TaskOutcome { id: 3, function: "app::resize", result, ran_on: None, delivery });
            }
        });
        let waiting = Waiting { on_item, seen: vec![false], left: 1, seq: None, object: None };
        shared.book().waiting.insert(3, Arc::new(Mutex::new(waiting)));
        shared.fail_task(3, RemoteError::Lost { deliveries: 5 }, None, 0);
        let o = TaskHandle { id: 3, slot }.wait();
        let e = o.decode::<u64>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "task 3 (`app::resize`) lost: handed to a worker 5 times, and each vanished before finishing it"
        );
    }
}
