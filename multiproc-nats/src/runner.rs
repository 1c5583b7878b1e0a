//! What a worker runs its tasks on: the [`TaskRunner`] seam; [`PoolRunner`], the
//! default, which runs them on a local `multiproc::Pool` of processes (so that crashes,
//! timeouts, retries, an initializer, `max_tasks_per_child` and memory limits behave
//! exactly as on one machine); and [`ProcessRunner`], one bare child process per slot.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use multiproc::remote::{PoolTask, RemoteTask, RunError, TaskChild};
use multiproc::{Pool, PoolError, TaskError};

use crate::envelope::{ItemResults, RemoteError, host_name, push_item};

/// One task message as a worker received it, checked to be of this very build: a
/// function and a run of items (arguments) to call it with.
///
/// ```
/// use multiproc_nats::{ItemResults, RunReport, Task, TaskRunner};
///
/// /// A runner that answers each item with its own argument bytes.
/// struct Echo;
///
/// impl TaskRunner for Echo {
///     fn slots(&self) -> usize {
///         1
///     }
///
///     fn run(&self, _slot: usize, task: &Task<'_>) -> RunReport {
///         let mut results = ItemResults::new();
///         for arg in task.each_arg().unwrap_or_default() {
///             results.push(Ok(arg));
///         }
///         RunReport { results, process_pid: None }
///     }
/// }
///
/// // Two items, each a little-endian u32 length and its bytes.
/// let args = [&2u32.to_le_bytes()[..], b"hi", &1u32.to_le_bytes()[..], b"!"].concat();
/// let task = Task {
///     id: 1,
///     fingerprint: 0,
///     function: 0,
///     trampoline: 0,
///     function_name: "echo",
///     items: 2,
///     chunk: 1,
///     args: &args,
///     timeout: None,
///     retries: 0,
/// };
/// assert_eq!(task.each_arg(), Some(vec![&b"hi"[..], &b"!"[..]]));
/// let report = Echo.run(0, &task);
/// assert_eq!(report.results.get(1), Some(Ok(&b"!"[..])));
/// // A worker serves with it: `start_worker(config, std::sync::Arc::new(Echo))`.
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Task<'a> {
    /// The task's id within its client.
    pub id: u64,
    /// The build fingerprint of the task (equal to this program's).
    pub fingerprint: u64,
    /// Offset of the user's function.
    pub function: i64,
    /// Offset of its trampoline (the pool's, made for the function's types).
    pub trampoline: i64,
    /// The function's name, for messages.
    pub function_name: &'a str,
    /// How many items `args` holds.
    pub items: u32,
    /// Items per task, as a local pool cuts them: what a timeout and a death cost.
    ///
    /// 0: the client left the cut to the runner (a `map` with the default chunksize and
    /// no time limit). [`PoolRunner`] then cuts the items by their measured time, about
    /// 2 ms of work a task, so results come back (and are stored) as the message runs,
    /// and a redelivery re-runs little finished work.
    pub chunk: u32,
    /// The items: each a `u32` little-endian length and the encoded argument.
    pub args: &'a [u8],
    /// Each task's time limit (a chunk counts as one task): past it, the runner kills
    /// what runs it.
    pub timeout: Option<Duration>,
    /// How many times an item whose process died runs again.
    pub retries: u32,
}

impl Task<'_> {
    /// The items' arguments, in order (`None` for a malformed list).
    pub fn each_arg(&self) -> Option<Vec<&[u8]>> {
        let mut out = Vec::with_capacity(self.items as usize);
        let mut body = self.args;
        for _ in 0..self.items {
            let len = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
            out.push(body.get(4..4 + len)?);
            body = &body[4 + len..];
        }
        body.is_empty().then_some(out)
    }
}

/// What a runner says about one task message.
///
/// ```
/// use multiproc_nats::{RemoteError, RunReport};
///
/// let refused = RemoteError::Panicked { message: "cannot run here".into(), location: None, backtrace: None };
/// let report = RunReport::failed(3, &refused); // one outcome per item, always
/// assert_eq!(report.results.len(), 3);
/// assert_eq!(report.process_pid, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Every item's encoded result, or why it has none, in item order.
    pub results: ItemResults,
    /// The pid of the process that ran the task, when one process ran it all.
    pub process_pid: Option<u32>,
}

impl RunReport {
    /// The same error for each of `items` items.
    ///
    /// ```
    /// use multiproc_nats::{RemoteError, RunReport};
    ///
    /// let e = RemoteError::Panicked { message: "no".into(), location: None, backtrace: None };
    /// assert_eq!(RunReport::failed(2, &e).results.len(), 2);
    /// ```
    pub fn failed(items: u32, error: &RemoteError) -> RunReport {
        let mut results = ItemResults::new();
        for _ in 0..items {
            results.push(Err(error));
        }
        RunReport { results, process_pid: None }
    }
}

/// Runs the tasks a worker receives: raw task in, raw results (or errors) out.
///
/// The worker calls [`run`](TaskRunner::run) from [`slots`](TaskRunner::slots) threads
/// at once, each passing its own slot number, and never has more task messages in hand
/// than slots. The report must hold exactly one outcome per item.
///
/// ```
/// use multiproc_nats::{ItemResults, RunReport, Task, TaskRunner};
///
/// /// A runner that answers each item with its own argument bytes.
/// struct Echo;
///
/// impl TaskRunner for Echo {
///     fn slots(&self) -> usize {
///         1
///     }
///
///     fn run(&self, _slot: usize, task: &Task<'_>) -> RunReport {
///         let mut results = ItemResults::new();
///         for arg in task.each_arg().unwrap_or_default() {
///             results.push(Ok(arg));
///         }
///         RunReport { results, process_pid: None }
///     }
/// }
///
/// // Two items, each a little-endian u32 length and its bytes.
/// let args = [&2u32.to_le_bytes()[..], b"hi", &1u32.to_le_bytes()[..], b"!"].concat();
/// let task = Task {
///     id: 1,
///     fingerprint: 0,
///     function: 0,
///     trampoline: 0,
///     function_name: "echo",
///     items: 2,
///     chunk: 1,
///     args: &args,
///     timeout: None,
///     retries: 0,
/// };
/// assert_eq!(task.each_arg(), Some(vec![&b"hi"[..], &b"!"[..]]));
/// let report = Echo.run(0, &task);
/// assert_eq!(report.results.get(1), Some(Ok(&b"!"[..])));
/// // A worker serves with it: `start_worker(config, std::sync::Arc::new(Echo))`.
/// ```
pub trait TaskRunner: Send + Sync + 'static {
    /// How many task messages it takes at once.
    fn slots(&self) -> usize;

    /// Runs one task message to its end, blocking; `slot` is in `0..slots()`, and no two
    /// calls run with the same slot at once.
    fn run(&self, slot: usize, task: &Task<'_>) -> RunReport;

    /// Runs only items `wanted` of the task (item numbers, ascending, each once: every
    /// item on a first delivery, fewer on a redelivery whose other items already have
    /// their results stored), telling `done` each one's outcome by its item number as
    /// soon as it has it (in any order, once each), so that the worker stores results
    /// while the others still run. Returns the pid of the process that ran the task, when
    /// one process ran it all. The worker calls this, not [`run`](TaskRunner::run).
    ///
    /// The default runs the `wanted` items as a task of their own through
    /// [`run`](TaskRunner::run), and tells their outcomes when it ends; a runner that
    /// learns outcomes earlier says so by overriding it (both runners of this crate do).
    ///
    /// ```
    /// use multiproc_nats::{ItemResults, RunReport, Task, TaskRunner};
    ///
    /// struct Echo;
    ///
    /// impl TaskRunner for Echo {
    ///     fn slots(&self) -> usize {
    ///         1
    ///     }
    ///
    ///     fn run(&self, _slot: usize, task: &Task<'_>) -> RunReport {
    ///         let mut results = ItemResults::new();
    ///         for arg in task.each_arg().unwrap_or_default() {
    ///             results.push(Ok(arg));
    ///         }
    ///         RunReport { results, process_pid: None }
    ///     }
    /// }
    ///
    /// let args = [&1u32.to_le_bytes()[..], b"a", &1u32.to_le_bytes()[..], b"b", &1u32.to_le_bytes()[..], b"c"].concat();
    /// let task = Task {
    ///     id: 1,
    ///     fingerprint: 0,
    ///     function: 0,
    ///     trampoline: 0,
    ///     function_name: "echo",
    ///     items: 3,
    ///     chunk: 1,
    ///     args: &args,
    ///     timeout: None,
    ///     retries: 0,
    /// };
    /// // Item 1 already has its result stored: only items 0 and 2 run.
    /// let mut told = Vec::new();
    /// Echo.run_items(0, &task, &[0, 2], &mut |k, outcome| told.push((k, outcome.unwrap().to_vec())));
    /// assert_eq!(told, [(0, b"a".to_vec()), (2, b"c".to_vec())]);
    /// ```
    fn run_items(&self, slot: usize, task: &Task<'_>, wanted: &[u32], done: &mut ItemSink<'_>) -> Option<u32> {
        let Some(args) = args_of(task, wanted) else {
            fail_all(wanted, done, &malformed());
            return None;
        };
        let args = &args[..];
        let report = self.run(slot, &Task { items: wanted.len() as u32, args, ..*task });
        if report.results.len() != wanted.len() {
            let message =
                format!("the worker's runner gave {} outcomes for {} items", report.results.len(), wanted.len());
            fail_all(wanted, done, &RemoteError::Spawn { host: host_name(), worker_pid: std::process::id(), message });
            return None;
        }
        for (i, &k) in wanted.iter().enumerate() {
            match report.results.get(i).expect("one outcome per item, checked above") {
                Ok(value) => done(k, Ok(value)),
                Err(e) => done(k, Err(&e)),
            }
        }
        report.process_pid
    }

    /// How many task messages it wants in hand now, at most `slots()`: the worker asks
    /// the broker for more only below this. Fewer leaves more for other workers; more
    /// hides the broker's latency. Default: `slots()`.
    fn wanted(&self) -> usize {
        self.slots()
    }

    /// What isolates the tasks' processes, in words, for the worker's heartbeat
    /// ([`LiveWorker::isolation`](crate::LiveWorker::isolation)); default: nothing said.
    fn isolation(&self) -> Option<String> {
        None
    }
}

/// Where a runner tells the outcome of each item as it finishes: `(item number,
/// outcome)` (see [`TaskRunner::run_items`]).
///
/// ```
/// use multiproc_nats::ItemSink;
///
/// let mut finished = Vec::new();
/// let sink: &mut ItemSink<'_> = &mut |k, outcome| finished.push((k, outcome.is_ok()));
/// sink(3, Ok(&b"done"[..]));
/// assert_eq!(finished, [(3, true)]);
/// ```
pub type ItemSink<'a> = dyn FnMut(u32, Result<&[u8], &RemoteError>) + 'a;

/// The argument list of items `wanted` of `task`: the task's own when it wants them all,
/// else a new one (`None`: the task's list is cut or malformed).
fn args_of<'a>(task: &Task<'a>, wanted: &[u32]) -> Option<std::borrow::Cow<'a, [u8]>> {
    if wanted.len() == task.items as usize {
        return Some(std::borrow::Cow::Borrowed(task.args));
    }
    subset_args(task, wanted).map(std::borrow::Cow::Owned)
}

/// The arguments of items `wanted` of `task`, as the items of a task of their own
/// (`None` for a malformed list or an item number past its end).
fn subset_args(task: &Task<'_>, wanted: &[u32]) -> Option<Vec<u8>> {
    let all = task.each_arg()?;
    let mut args = Vec::new();
    for &k in wanted {
        push_item(&mut args, all.get(k as usize)?);
    }
    Some(args)
}

/// Tells `done` the same error for each of items `wanted`.
fn fail_all(wanted: &[u32], done: &mut ItemSink<'_>, error: &RemoteError) {
    for &k in wanted {
        done(k, Err(error));
    }
}

fn malformed() -> RemoteError {
    RemoteError::Codec { message: "the task's item list is cut or malformed".into() }
}

/// A whole task's report, from a runner's [`run_items`](TaskRunner::run_items) over every
/// item (`run` calls it): the outcomes in item order, and an error for any item it
/// never told.
fn report_of(items: u32, run: impl FnOnce(&[u32], &mut ItemSink<'_>) -> Option<u32>) -> RunReport {
    let mut outcomes: Vec<Option<Result<Vec<u8>, RemoteError>>> = (0..items).map(|_| None).collect();
    let all: Vec<u32> = (0..items).collect();
    let process_pid = run(&all, &mut |k, outcome| {
        if let Some(slot) = outcomes.get_mut(k as usize)
            && slot.is_none()
        {
            *slot = Some(outcome.map(<[u8]>::to_vec).map_err(Clone::clone));
        }
    });
    let mut results = ItemResults::new();
    for outcome in outcomes {
        match outcome {
            Some(Ok(value)) => results.push(Ok(&value)),
            Some(Err(e)) => results.push(Err(&e)),
            None => {
                let message = "the worker's runner gave no outcome for this item".to_string();
                results.push(Err(&RemoteError::Spawn { host: host_name(), worker_pid: std::process::id(), message }));
            }
        }
    }
    RunReport { results, process_pid }
}

/// Runs each task message on a local [`Pool`], as a map of its items: the pool's worker
/// processes run them, and everything the pool does on one machine holds here — a task
/// that panics, segfaults or exits costs only its item, a timeout kills only its task's
/// process, `retries` run an item again after its process died, and the pool's
/// initializer, `max_tasks_per_child` and memory limits apply. This is what [`serve`]
/// uses.
///
/// How many task messages it holds adapts to the pace of the work, as a local pool's
/// windows do: as many as it has processes (plus what about 20 ms of its measured
/// throughput takes), so slow tasks stay on the broker for idle workers to take, while
/// tiny ones keep the processes busy while results travel back.
///
/// ```no_run
/// use std::sync::Arc;
/// use multiproc_nats::{PoolRunner, WorkerConfig};
///
/// fn connect_db(url: String) { /* runs once in every pool process */ }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     multiproc::init();
///     let pool = multiproc::Pool::builder()
///         .processes(8)
///         .initializer(connect_db, "postgres://db".to_string())
///         .max_tasks_per_child(1000)
///         .build()?;
///     let worker = multiproc_nats::start_worker(WorkerConfig::from_env()?, Arc::new(PoolRunner::new(pool)))?;
///     worker.join()?;
///     Ok(())
/// }
/// ```
///
/// [`serve`]: crate::serve
#[derive(Debug)]
pub struct PoolRunner {
    pool: Pool,
    slots: usize,
    pace: Mutex<Pace>,
    host: String,
    pid: u32,
}

/// The measured pace of the work: items finished per second, and items per message.
#[derive(Debug)]
struct Pace {
    since: Instant,
    items: u64,
    messages: u64,
    /// Items per second (0 until measured).
    rate: f64,
    items_per_message: f64,
}

/// How much work a worker keeps in hand beyond one message per process.
const IN_HAND: Duration = Duration::from_millis(20);
/// The shortest stretch a rate is measured over.
const PACE_WINDOW: Duration = Duration::from_millis(10);

impl PoolRunner {
    /// Runs tasks on `pool`.
    ///
    /// ```
    /// use multiproc_nats::PoolRunner;
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder().processes(2).max_tasks_per_child(100).build()?;
    /// let runner = PoolRunner::new(pool);
    /// # drop(runner);
    /// # Ok::<(), multiproc::PoolError>(())
    /// ```
    pub fn new(pool: Pool) -> PoolRunner {
        let slots = (4 * pool.processes()).max(64);
        let pace = Pace { since: Instant::now(), items: 0, messages: 0, rate: 0.0, items_per_message: 1.0 };
        PoolRunner { pool, slots, pace: Mutex::new(pace), host: host_name(), pid: std::process::id() }
    }

    /// Runs tasks on a new pool of `processes` (`Pool::new`).
    ///
    /// ```
    /// use multiproc_nats::PoolRunner;
    ///
    /// multiproc::init();
    /// let runner = PoolRunner::start(2)?; // a local pool of 2 processes
    /// assert_eq!(runner.pool().processes(), 2);
    /// # Ok::<(), multiproc::PoolError>(())
    /// ```
    pub fn start(processes: usize) -> Result<PoolRunner, PoolError> {
        Ok(PoolRunner::new(Pool::new(processes)?))
    }

    /// Holds at most `n` task messages at once (default: 4 × the pool's processes, at
    /// least 64); below that, how many it holds follows the pace of the work.
    ///
    /// ```
    /// use multiproc_nats::PoolRunner;
    ///
    /// multiproc::init();
    /// let runner = PoolRunner::start(2)?.slots(4); // 4 task messages in hand at once
    /// # drop(runner);
    /// # Ok::<(), multiproc::PoolError>(())
    /// ```
    pub fn slots(mut self, n: usize) -> PoolRunner {
        self.slots = n.max(1);
        self
    }

    /// Counts a finished message of `items` items into the pace.
    fn paced(&self, items: u32) {
        let mut p = self.pace.lock().unwrap_or_else(|e| e.into_inner());
        p.items += items as u64;
        p.messages += 1;
        let elapsed = p.since.elapsed();
        if elapsed >= PACE_WINDOW {
            let rate = p.items as f64 / elapsed.as_secs_f64();
            let per_message = p.items as f64 / p.messages as f64;
            let first = p.rate == 0.0;
            p.rate = if first { rate } else { 0.7 * p.rate + 0.3 * rate };
            p.items_per_message = if first { per_message } else { 0.7 * p.items_per_message + 0.3 * per_message };
            (p.since, p.items, p.messages) = (Instant::now(), 0, 0);
        }
    }

    /// The local pool.
    ///
    /// ```
    /// use multiproc_nats::PoolRunner;
    ///
    /// multiproc::init();
    /// let runner = PoolRunner::start(1)?;
    /// println!("{:?}", runner.pool().stats());
    /// # Ok::<(), multiproc::PoolError>(())
    /// ```
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A local pool's error, as it travels to the client.
    fn remote_error(&self, e: TaskError) -> RemoteError {
        let (host, worker_pid) = (self.host.clone(), self.pid);
        match e {
            TaskError::Panicked { message, location, backtrace, .. } => {
                RemoteError::Panicked { message, location: Some(location), backtrace }
            }
            TaskError::WorkerDied { pid, code, attempts, hint, .. } => {
                let attempts =
                    attempts.iter().map(|a| (a.pid, a.signal.map(|s| -s).or(a.exit_code).unwrap_or(-1))).collect();
                RemoteError::WorkerDied { host, worker_pid, pid, exitcode: code, attempts, hint }
            }
            TaskError::Timeout { pid, timeout, .. } => RemoteError::Timeout { host, worker_pid, pid, after: timeout },
            TaskError::Codec { message, .. } => RemoteError::Codec { message },
            TaskError::PoolBroken { reason, .. } => RemoteError::PoolBroken { host, worker_pid, reason },
            other => RemoteError::Spawn { host, worker_pid, message: other.to_string() },
        }
    }
}

/// How many messages to hold: one per process, plus [`IN_HAND`] of work at `rate` items
/// a second (twice the processes before anything was measured), at most `slots`.
fn in_hand(processes: usize, rate: f64, items_per_message: f64, slots: usize) -> usize {
    let wanted = if rate == 0.0 {
        2 * processes
    } else {
        processes + (rate * IN_HAND.as_secs_f64() / items_per_message.max(1.0)).round() as usize
    };
    wanted.clamp(1, slots)
}

/// A task's item outcomes as the pool's driver delivers them (each item once), until the
/// slot thread running the task takes them.
struct Gather {
    state: Mutex<Gathered>,
    /// Every item has its outcome.
    all_came: Condvar,
}

#[derive(Default)]
struct Gathered {
    /// Which items had their outcome.
    seen: Vec<bool>,
    /// How many did.
    count: usize,
    /// Outcomes not yet taken, as they came: a value is its range of `values`.
    new: Vec<(u32, Result<std::ops::Range<usize>, TaskError>)>,
    /// The bytes of those values, one after another (not one allocation per item).
    values: Vec<u8>,
}

/// Outcomes taken from a [`Gather`]: each item's, a value as its range of the bytes.
type Taken = (Vec<u8>, Vec<(u32, Result<std::ops::Range<usize>, TaskError>)>);

/// How often the slot thread of a running task takes the outcomes that came: the driver
/// wakes it only when all came, so a task of tiny items costs no wake-up per item.
const TAKE_EVERY: Duration = Duration::from_millis(20);

impl Gather {
    fn new(items: u32) -> Gather {
        let state = Gathered { seen: vec![false; items as usize], ..Gathered::default() };
        Gather { state: Mutex::new(state), all_came: Condvar::new() }
    }

    /// An item's outcome, from the driver.
    fn put(&self, k: u32, outcome: Result<&[u8], TaskError>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seen) = st.seen.get_mut(k as usize)
            && !*seen
        {
            *seen = true;
            st.count += 1;
            let outcome = outcome.map(|v| {
                let at = st.values.len();
                st.values.extend_from_slice(v);
                at..st.values.len()
            });
            st.new.push((k, outcome));
            if st.count == st.seen.len() {
                self.all_came.notify_one();
            }
        }
    }

    /// The outcomes that came since the last call: all of them once every item has its
    /// outcome, or, while some still run, those that came every [`TAKE_EVERY`].
    fn take(&self) -> Taken {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut waited = false;
        // Until all came, or some came and it is time to take them.
        while st.count < st.seen.len() && (st.new.is_empty() || !waited) {
            let (guard, wait) = self.all_came.wait_timeout(st, TAKE_EVERY).unwrap_or_else(|e| e.into_inner());
            st = guard;
            waited = wait.timed_out();
        }
        (std::mem::take(&mut st.values), std::mem::take(&mut st.new))
    }
}

impl TaskRunner for PoolRunner {
    fn slots(&self) -> usize {
        self.slots
    }

    fn wanted(&self) -> usize {
        let p = self.pace.lock().unwrap_or_else(|e| e.into_inner());
        in_hand(self.pool.processes(), p.rate, p.items_per_message, self.slots)
    }

    fn isolation(&self) -> Option<String> {
        let stats = self.pool.stats();
        let sandbox = stats.sandbox.unwrap_or_else(|| "none".into());
        Some(format!("containment: {}; sandbox: {sandbox}", stats.containment))
    }

    fn run(&self, slot: usize, task: &Task<'_>) -> RunReport {
        report_of(task.items, |all, done| self.run_items(slot, task, all, done))
    }

    fn run_items(&self, _slot: usize, task: &Task<'_>, wanted: &[u32], done: &mut ItemSink<'_>) -> Option<u32> {
        let this = multiproc::remote::fingerprint();
        if task.fingerprint != this {
            let e = RemoteError::WrongBinary {
                host: self.host.clone(),
                worker_pid: self.pid,
                client: task.fingerprint,
                worker: this,
            };
            fail_all(wanted, done, &e);
            return None;
        }
        let Some(args) = args_of(task, wanted) else {
            fail_all(wanted, done, &malformed());
            return None;
        };
        let args = &args[..];
        let n = wanted.len() as u32;
        let gather = Arc::new(Gather::new(n));
        let filler = gather.clone();
        let item_done: multiproc::remote::ItemDone = Box::new(move |k, outcome| filler.put(k, outcome));
        let raw = PoolTask {
            function: task.function,
            trampoline: task.trampoline,
            items: n,
            chunk: task.chunk,
            args,
            timeout: task.timeout,
            retries: task.retries,
        };
        if let Err(message) = multiproc::remote::run_on_pool(&self.pool, &raw, item_done) {
            fail_all(wanted, done, &RemoteError::Codec { message });
            return None;
        }
        let (mut told, mut pid) = (0, None);
        while told < n {
            let (values, outcomes) = gather.take();
            for (k, outcome) in outcomes {
                told += 1;
                match outcome {
                    Ok(range) => done(wanted[k as usize], Ok(&values[range])),
                    Err(e) => {
                        if let TaskError::WorkerDied { pid: p, .. } | TaskError::Timeout { pid: p, .. } = &e {
                            pid = Some(*p);
                        }
                        done(wanted[k as usize], Err(&self.remote_error(e)));
                    }
                }
            }
        }
        self.paced(n);
        pid.filter(|_| n == 1)
    }
}

/// Runs each task in a bare child process of this program (the same build), one item at
/// a time per child and one child per slot. A task that panics leaves its child running;
/// one that crashes it, or passes its timeout, costs that child, which the next item of
/// the slot replaces. Simpler than [`PoolRunner`], without retries, initializer or
/// recycling; a chunk's timeout applies to each of its items.
///
/// The worker process itself must have called `multiproc::init()` first in `main`.
///
/// ```no_run
/// use multiproc_nats::{ProcessRunner, WorkerConfig, start_worker};
/// use std::sync::Arc;
///
/// multiproc::init();
/// // One bare child process per slot, 4 slots.
/// let worker = start_worker(WorkerConfig::from_env()?, Arc::new(ProcessRunner::start(4)?))?;
/// worker.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ProcessRunner {
    children: Vec<Mutex<Option<TaskChild>>>,
    host: String,
    pid: u32,
}

impl ProcessRunner {
    /// A runner with `slots` child processes, started now: this fails at once when a
    /// child cannot start (for instance when `multiproc::init()` was not called).
    ///
    /// ```
    /// multiproc::init();
    /// let runner = multiproc_nats::ProcessRunner::start(2)?;
    /// # drop(runner);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn start(slots: usize) -> Result<ProcessRunner, multiproc::Error> {
        let runner = ProcessRunner::new(slots);
        for (slot, child) in runner.children.iter().enumerate() {
            *child.lock().unwrap_or_else(|e| e.into_inner()) = Some(TaskChild::start(&slot_name(slot))?);
        }
        Ok(runner)
    }

    /// A runner with `slots` child processes, started when first needed.
    ///
    /// ```
    /// multiproc::init();
    /// let runner = multiproc_nats::ProcessRunner::new(2); // children start on first use
    /// # drop(runner);
    /// ```
    pub fn new(slots: usize) -> ProcessRunner {
        ProcessRunner {
            children: (0..slots.max(1)).map(|_| Mutex::new(None)).collect(),
            host: host_name(),
            pid: std::process::id(),
        }
    }
}

impl TaskRunner for ProcessRunner {
    fn slots(&self) -> usize {
        self.children.len()
    }

    fn run(&self, slot: usize, task: &Task<'_>) -> RunReport {
        report_of(task.items, |all, done| self.run_items(slot, task, all, done))
    }

    fn run_items(&self, slot: usize, task: &Task<'_>, wanted: &[u32], done: &mut ItemSink<'_>) -> Option<u32> {
        let Some(args) = task.each_arg() else {
            fail_all(wanted, done, &malformed());
            return None;
        };
        let mut held = self.children[slot].lock().unwrap_or_else(|e| e.into_inner());
        let mut last_pid = None;
        for &k in wanted {
            let Some(&arg) = args.get(k as usize) else {
                fail_all(&[k], done, &malformed());
                continue;
            };
            if held.as_ref().is_none_or(|c| !c.is_usable()) {
                *held = None;
                match TaskChild::start(&slot_name(slot)) {
                    Ok(child) => *held = Some(child),
                    Err(e) => {
                        let host = self.host.clone();
                        done(k, Err(&RemoteError::Spawn { host, worker_pid: self.pid, message: e.to_string() }));
                        continue;
                    }
                }
            }
            let child = held.as_mut().expect("a child was just made sure of");
            last_pid = Some(child.pid());
            let remote = RemoteTask {
                fingerprint: task.fingerprint,
                function: task.function,
                trampoline: task.trampoline,
                function_name: task.function_name,
                arg,
            };
            match child.run(&remote, task.timeout) {
                Ok(value) => done(k, Ok(&value)),
                Err(e) => done(k, Err(&self.remote_error(e))),
            }
            if !child.is_usable() {
                *held = None;
            }
        }
        last_pid.filter(|_| task.items == 1)
    }
}

fn slot_name(slot: usize) -> String {
    format!("TaskProcess-{}", slot + 1)
}

impl ProcessRunner {
    fn remote_error(&self, e: RunError) -> RemoteError {
        let (host, worker_pid) = (self.host.clone(), self.pid);
        match e {
            RunError::Panicked { message, location, backtrace, .. } => {
                RemoteError::Panicked { message, location, backtrace }
            }
            RunError::Codec { message, .. } => RemoteError::Codec { message },
            RunError::Died { pid, exitcode, .. } => {
                RemoteError::WorkerDied { host, worker_pid, pid, exitcode, attempts: vec![(pid, exitcode)], hint: None }
            }
            RunError::Timeout { pid, after, .. } => RemoteError::Timeout { host, worker_pid, pid, after },
            RunError::WrongBinary { task, this, .. } => {
                RemoteError::WrongBinary { host, worker_pid, client: task, worker: this }
            }
            // A broken child is as good as a dead one for the task.
            RunError::Protocol { pid, .. } => RemoteError::WorkerDied {
                host,
                worker_pid,
                pid,
                exitcode: -9,
                attempts: vec![(pid, -9)],
                hint: Some("its process broke the task protocol and was killed".into()),
            },
            other => RemoteError::Spawn { host, worker_pid, message: other.to_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::in_hand;

    #[test]
    fn slow_tasks_stay_on_the_broker_and_tiny_ones_come_in_numbers() {
        // Nothing measured yet: two per process.
        assert_eq!(in_hand(4, 0.0, 1.0, 64), 8);
        // One-second tasks on 4 processes: one each, nothing more.
        assert_eq!(in_hand(4, 4.0, 1.0, 64), 4);
        // 5 ms tasks on one process: a few more, for 20 ms of work.
        assert_eq!(in_hand(1, 200.0, 1.0, 64), 5);
        // Tiny tasks: as many as allowed; big messages count for their items.
        assert_eq!(in_hand(2, 20_000.0, 1.0, 64), 64);
        assert_eq!(in_hand(2, 20_000.0, 100.0, 64), 6);
    }
}
