//! What a task's result can be besides its value, and why a pool could not be built.

use std::fmt;
use std::time::Duration;

use crate::error::describe_exit;

/// One run of a task whose worker died under it: which worker, and how it ended.
///
/// ```
/// use multiproc::TaskError;
///
/// fn crash(_: ()) { std::process::abort() }
///
/// multiproc::init();
/// let pool = multiproc::Pool::builder().processes(1).retries(1).build()?;
/// match pool.apply(crash, ()) {
///     Err(TaskError::WorkerDied { attempts, .. }) => {
///         assert_eq!(attempts.len(), 2); // the first run and its one retry
///         assert!(attempts.iter().all(|a| a.signal == Some(6))); // SIGABRT each time
///     }
///     other => panic!("expected a dead worker, got {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The worker's process id.
    pub pid: u32,
    /// The signal that ended it, if a signal did.
    pub signal: Option<i32>,
    /// Its exit code, if it exited by itself.
    pub exit_code: Option<i32>,
}

impl Attempt {
    pub(crate) fn from_exitcode(pid: u32, code: i32) -> Attempt {
        if code < 0 {
            Attempt { pid, signal: Some(-code), exit_code: None }
        } else {
            Attempt { pid, signal: None, exit_code: Some(code) }
        }
    }

    fn python_code(&self) -> i32 {
        match (self.signal, self.exit_code) {
            (Some(s), _) => -s,
            (None, Some(c)) => c,
            (None, None) => -1,
        }
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {} ended with {}", self.pid, describe_exit(self.python_code()))
    }
}

/// Why a task gave no value. Every variant names the task's function.
///
/// A task that panics is like a Python exception: the worker survives and the panic
/// comes back here. A task whose worker dies, hangs past its timeout or is cancelled costs
/// that task only; the pool goes on.
///
/// ```
/// use multiproc::{Pool, TaskError};
///
/// fn fails(x: u32) -> u32 {
///     if x == 2 { panic!("two is not allowed") }
///     x
/// }
///
/// multiproc::init();
/// let pool = Pool::new(1).unwrap();
/// match pool.apply(fails, 2) {
///     Err(TaskError::Panicked { message, .. }) => assert_eq!(message, "two is not allowed"),
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(pool.apply(fails, 3).unwrap(), 3); // the worker survived
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; its worker caught the panic and goes on.
    #[error("task `{task}` panicked at {location}: {message}")]
    Panicked {
        /// The task's function.
        task: &'static str,
        /// The panic message.
        message: String,
        /// Where it panicked (`file:line:column`).
        location: String,
        /// The backtrace, when `RUST_BACKTRACE` asked for one.
        backtrace: Option<String>,
    },
    /// The worker running the task died (a signal, `exit`, `abort`, a stack overflow, the
    /// kernel's OOM killer). The worker was replaced; no other task was lost.
    #[error("task `{task}` was running in worker {pid}, which died with {}{}{}", describe_exit(*code), retried(attempts), hinted(hint))]
    WorkerDied {
        /// The task's function.
        task: &'static str,
        /// The last worker's process id.
        pid: u32,
        /// The signal that killed it, if one did.
        signal: Option<i32>,
        /// Its exit code, if it exited.
        exit_code: Option<i32>,
        /// The same in Python's convention (`-N` for signal N), for messages.
        code: i32,
        /// Every run of the task, oldest first (more than one with `retries`).
        attempts: Vec<Attempt>,
        /// A likely explanation, when there is one: what the worker said before it ended
        /// (e.g. its connection was closed by the task), or an address-space limit.
        hint: Option<String>,
    },
    /// The task ran past its timeout: its worker was killed and replaced.
    #[error("task `{task}` ran longer than its timeout of {timeout:?}; worker {pid} was killed")]
    Timeout {
        /// The task's function.
        task: &'static str,
        /// The worker that was killed.
        pid: u32,
        /// The timeout in force.
        timeout: Duration,
    },
    /// The task was cancelled with [`AsyncResult::cancel`](crate::AsyncResult::cancel)
    /// (or its map was).
    #[error("task `{task}` was cancelled")]
    Cancelled {
        /// The task's function.
        task: &'static str,
    },
    /// The pool was terminated before the task finished.
    #[error("task `{task}` did not finish: the pool was terminated")]
    Terminated {
        /// The task's function.
        task: &'static str,
    },
    /// An argument or a result did not serialize or deserialize.
    #[error("task `{task}`: {message}")]
    Codec {
        /// The task's function.
        task: &'static str,
        /// What the codec said.
        message: String,
    },
    /// The pool was closed (or terminated) before this submission.
    #[error("the pool is closed and accepts no new tasks (task `{task}`)")]
    Closed {
        /// The task's function.
        task: &'static str,
    },
    /// The pool cannot run tasks any more: its workers fail to start (their initializer
    /// panics or crashes), and it stopped restarting them instead of looping forever.
    #[error("task `{task}` cannot run: {reason}")]
    PoolBroken {
        /// The task's function.
        task: &'static str,
        /// Why the pool gave up.
        reason: String,
    },
    /// The task ran, or was to run, on a cluster of machines (the `multiproc-nats` crate)
    /// and failed there for a reason a local pool does not have: see [`RemoteFailure`].
    /// (A crash, a panic or a timeout on a remote machine is `WorkerDied`, `Panicked` or
    /// `Timeout`, as locally.)
    #[error("task `{task}` could not run on the cluster: {message}")]
    Remote {
        /// The task's function.
        task: &'static str,
        /// What went wrong, to match on.
        kind: RemoteFailure,
        /// What happened, where (the worker's host and pid) and what to do.
        message: String,
    },
    /// Only the wait stopped: [`AsyncResult::get_timeout`](crate::AsyncResult::get_timeout)
    /// gave up; the task itself goes on.
    #[error("gave up waiting for task `{task}` after {waited:?}; the task goes on")]
    WaitTimeout {
        /// The task's function.
        task: &'static str,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The result was waited for on the thread that delivers it: inside a callback of
    /// the same pool (callbacks run on the pool's driver thread). Such a wait could never
    /// end, and would stop every task of the pool with it, so it fails at once; the task
    /// itself goes on. The same for a future of the pool's (a handle, a map, an `imap`'s
    /// next item, `as_completed`'s next) polled there before it is ready (an `.await` in a
    /// `block_on` inside the callback): it is ready at once with this error.
    #[error(
        "task `{task}`: its result was waited for inside a callback of its own pool, on the thread that \
         delivers results, where it could never arrive (wait on another thread, or start the work from the \
         callback without waiting for it); the task goes on"
    )]
    WaitInCallback {
        /// The task's function.
        task: &'static str,
    },
}

/// Why a task failed on a cluster in a way a local pool cannot ([`TaskError::Remote`]).
///
/// ```
/// use multiproc::{RemoteFailure, TaskError};
///
/// /// What to tell an operator about a failed task of a cluster pool.
/// fn advice(e: &TaskError) -> &'static str {
///     match e {
///         TaskError::Remote { kind: RemoteFailure::WrongBinary, .. } => "start the workers from this binary",
///         TaskError::Remote { kind: RemoteFailure::Lost, .. } => "workers keep vanishing under this task",
///         TaskError::Remote { .. } => "a broker or worker problem",
///         _ => "the task itself failed",
///     }
/// }
/// assert_eq!(advice(&TaskError::Cancelled { task: "f" }), "the task itself failed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemoteFailure {
    /// A worker built from another binary refused the task without running it: start the
    /// workers from the very binary that submits.
    WrongBinary,
    /// A worker that speaks another version of the cluster protocol refused the task.
    Version,
    /// Every worker that took the task vanished before finishing it, as many times as
    /// the queue allows: the broker gave up on it.
    Lost,
    /// The broker did not take the task (unreachable for too long, or refused it).
    Broker,
    /// The task's message (or its result) is larger than the broker carries.
    TooLarge,
    /// The worker could not run the task (it could not start the processes to run it).
    Worker,
}

fn hinted(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!(": {h}")).unwrap_or_default()
}

fn retried(attempts: &[Attempt]) -> String {
    if attempts.len() <= 1 {
        return String::new();
    }
    let all: Vec<String> = attempts.iter().map(Attempt::to_string).collect();
    format!(" after {} attempts ({})", attempts.len(), all.join("; "))
}

impl TaskError {
    /// The name of the task's function.
    ///
    /// ```
    /// multiproc::init();
    /// fn fail(_: ()) { panic!("no") }
    ///
    /// let pool = multiproc::Pool::new(1)?;
    /// let e = pool.apply(fail, ()).unwrap_err();
    /// assert!(e.task().ends_with("fail"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn task(&self) -> &'static str {
        match self {
            TaskError::Panicked { task, .. }
            | TaskError::WorkerDied { task, .. }
            | TaskError::Timeout { task, .. }
            | TaskError::Cancelled { task }
            | TaskError::Terminated { task }
            | TaskError::Codec { task, .. }
            | TaskError::Closed { task }
            | TaskError::PoolBroken { task, .. }
            | TaskError::Remote { task, .. }
            | TaskError::WaitTimeout { task, .. }
            | TaskError::WaitInCallback { task } => task,
        }
    }

    pub(crate) fn died(task: &'static str, attempts: Vec<Attempt>, hint: Option<String>) -> TaskError {
        let last = attempts.last().cloned().unwrap_or(Attempt { pid: 0, signal: None, exit_code: None });
        TaskError::WorkerDied {
            task,
            pid: last.pid,
            signal: last.signal,
            exit_code: last.exit_code,
            code: last.python_code(),
            attempts,
            hint,
        }
    }
}

/// Why a pool could not be built, or an operation on the whole pool failed.
///
/// ```
/// use multiproc::{Pool, PoolError};
///
/// multiproc::init();
/// match Pool::builder().max_tasks_per_child(0).build() {
///     Err(PoolError::Invalid(why)) => assert!(why.contains("max_tasks_per_child")),
///     other => panic!("expected a refusal, got {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A worker could not be started.
    #[error("cannot start a pool worker: {0}")]
    Start(#[from] crate::Error),
    /// A worker's initializer panicked or crashed while the pool was being built.
    #[error("the initializer `{initializer}` failed in {worker} (pid {pid}): {reason}")]
    Initializer {
        /// The initializer's function.
        initializer: &'static str,
        /// The worker's name (`PoolWorker-N`).
        worker: String,
        /// The worker's pid.
        pid: u32,
        /// Its panic message, or how the worker died.
        reason: String,
    },
    /// A setting that cannot work (e.g. zero processes).
    #[error("invalid pool setting: {0}")]
    Invalid(String),
    /// `join()` was called while the pool still accepts work: call `close()` or
    /// `terminate()` first, as in Python.
    #[error("the pool is still running: call close() or terminate() before join()")]
    StillRunning,
    /// `join()` was called inside one of the pool's callbacks: they run on the thread that
    /// finishes the pool's work, which cannot wait for itself. (`close()` and
    /// `terminate()` work there; the pool stops once the callback returns.)
    #[error(
        "join() was called inside a callback of the same pool, on the thread that finishes its work, which \
         cannot wait for itself: join from another thread (close() and terminate() work in a callback)"
    )]
    JoinInCallback,
}
