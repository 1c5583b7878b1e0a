//! The worker: pulls tasks from the pool's queue, runs them on a [`TaskRunner`] (by
//! default a [`PoolRunner`]: a local `multiproc::Pool`), sends each task's results to the
//! client that submitted it, then acks the task.
//!
//! - [`settings`]: how it connects and how much it runs at once.
//! - [`pulls`]: how many tasks to ask for, and the open pull requests (pure).
//! - [`admission`]: whether it may run a task (pure): it receives only its own build's
//!   tasks, and a task of another build or protocol version is never run; see the crate
//!   docs for why.
//! - [`slots`]: the threads that run tasks on the runner.
//! - [`results`]: a task's results cut into messages and handed to its client.
//! - [`progress`]: a running task's finished results stored in batches as it goes, and
//!   noted, so that a redelivery runs only the items without results (pure, but for
//!   reading and writing the note).
//! - [`room`]: the cap on the bytes of large arguments held at once, and its order.
//! - [`serving`]: the loop, one method per event.

mod admission;
mod leftovers;
mod progress;
mod pulls;
mod results;
mod room;
mod serving;
mod settings;
mod slots;
mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::ClusterError;
use crate::runner::{PoolRunner, TaskRunner};
pub(crate) use progress::noted_runs;
use serving::Worker;
pub use settings::{MAX_ARGS_BYTES_ENV, PROCESSES_ENV, RESULT_PATIENCE_ENV, SANDBOX_ENV, WorkerConfig};
use stats::StatsCell;
pub use stats::WorkerStats;

/// The environment variable that turns a program into a worker at
/// [`init()`](crate::init): set it to `1`.
pub const WORKER_ENV: &str = "MULTIPROC_NATS_WORKER";

/// A running worker: stop it, wait for it, watch what it does.
///
/// ```no_run
/// use multiproc_nats::{PoolRunner, WorkerConfig, start_worker};
/// use std::sync::Arc;
///
/// multiproc::init();
/// let worker = start_worker(WorkerConfig::from_env()?, Arc::new(PoolRunner::start(4)?))?;
/// use std::time::Duration;
/// // Wait (at most a minute) until it has completed a task, then stop it.
/// let _ = worker.wait_for(Duration::from_secs(60), |s| s.completed > 0);
/// worker.stop();
/// worker.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<Result<(), ClusterError>>>,
    stats: Arc<StatsCell>,
}

impl WorkerHandle {
    /// Asks the worker to stop: it takes no new task, finishes and delivers the ones it
    /// runs, then ends.
    ///
    /// ```no_run
    /// use multiproc_nats::{PoolRunner, WorkerConfig, start_worker};
    /// use std::sync::Arc;
    ///
    /// multiproc::init();
    /// let worker = start_worker(WorkerConfig::from_env()?, Arc::new(PoolRunner::start(2)?))?;
    /// worker.stop(); // takes no more tasks, finishes those in hand
    /// worker.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits for the worker to end (after [`stop`](WorkerHandle::stop), or a fatal error).
    ///
    /// ```no_run
    /// use multiproc_nats::{PoolRunner, WorkerConfig, start_worker};
    /// use std::sync::Arc;
    ///
    /// multiproc::init();
    /// let worker = start_worker(WorkerConfig::from_env()?, Arc::new(PoolRunner::start(2)?))?;
    /// worker.stop();
    /// worker.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(mut self) -> Result<(), ClusterError> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ClusterError::Closed("worker (its thread panicked)")),
            None => Ok(()),
        }
    }

    /// What the worker has done so far.
    ///
    /// ```no_run
    /// use multiproc_nats::{PoolRunner, WorkerConfig, start_worker};
    /// use std::sync::Arc;
    ///
    /// multiproc::init();
    /// let worker = start_worker(WorkerConfig::from_env()?, Arc::new(PoolRunner::start(2)?))?;
    /// println!("{:?}", worker.stats());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> WorkerStats {
        *self.stats.lock()
    }

    /// Waits until `ready(stats)` holds, or `timeout` passes; returns the stats if it held.
    ///
    /// ```no_run
    /// use multiproc_nats::{PoolRunner, WorkerConfig, start_worker};
    /// use std::sync::Arc;
    ///
    /// multiproc::init();
    /// let worker = start_worker(WorkerConfig::from_env()?, Arc::new(PoolRunner::start(2)?))?;
    /// use std::time::Duration;
    /// let done = worker.wait_for(Duration::from_secs(60), |s| s.completed >= 10);
    /// println!("{done:?}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for(&self, timeout: Duration, ready: impl Fn(&WorkerStats) -> bool) -> Option<WorkerStats> {
        let deadline = Instant::now() + timeout;
        let mut s = self.stats.lock();
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
/// `multiproc::Pool` of `config`'s processes (a [`PoolRunner`]), contained, limited and
/// sandboxed as `config` says ([`WorkerConfig::contain`], [`WorkerConfig::limits`],
/// [`WorkerConfig::sandbox`]). `multiproc::init()` must be the first line of `main`. For a
/// local pool with an initializer, recycling or memory limits, give [`start_worker`] a
/// [`PoolRunner`] of your own pool (built with the same options: `WorkerConfig`'s
/// containment, limits and sandbox are what `serve` builds its pool with).
///
/// SIGTERM or SIGINT (Ctrl-C) drains the worker: it takes no new task, finishes the ones
/// it holds (its pool's processes ignore SIGINT, so a terminal's Ctrl-C, which reaches
/// them too, does not end their tasks), stores their results and acks them, then returns `Ok`; a second signal ends
/// the process at once (exit code 130), leaving what it held to other workers after the
/// queue's `ack_wait`.
/// ```no_run
/// multiproc::init();
/// multiproc_nats::serve(multiproc_nats::WorkerConfig::from_env()?)?; // until stopped
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn serve(config: WorkerConfig) -> Result<(), ClusterError> {
    let runner = PoolRunner::new(config.local_pool()?);
    launch(config, Arc::new(runner), true)?.join()
}

/// Starts a worker in the background that runs its tasks on `runner` (whose
/// [`slots`](TaskRunner::slots) say how many task messages it takes at once). It has
/// connected and found (or created) the queue when this returns. It leaves signals
/// alone: stop it with [`WorkerHandle::stop`].
///
/// ```no_run
/// use multiproc_nats::{PoolRunner, WorkerConfig, start_worker};
/// use std::sync::Arc;
///
/// multiproc::init();
/// let worker = start_worker(WorkerConfig::from_env()?, Arc::new(PoolRunner::start(2)?))?;
/// worker.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn start_worker(config: WorkerConfig, runner: Arc<dyn TaskRunner>) -> Result<WorkerHandle, ClusterError> {
    launch(config, runner, false)
}

/// Starts a worker thread; with `on_signals`, SIGTERM and SIGINT stop it too.
fn launch(config: WorkerConfig, runner: Arc<dyn TaskRunner>, on_signals: bool) -> Result<WorkerHandle, ClusterError> {
    let (stop, stop_rx) = watch::channel(false);
    let stats = Arc::new(StatsCell::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread_stats = stats.clone();
    let thread = std::thread::Builder::new().name("multiproc-nats-worker".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let stop_rx = if on_signals { stop_on_signals(stop_rx)? } else { stop_rx };
            match Worker::connect(config, runner, thread_stats).await {
                Ok(worker) => {
                    let _ = ready_tx.send(Ok(()));
                    worker.run(stop_rx).await
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    Ok(())
                }
            }
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

/// A stop signal that also comes on SIGTERM or SIGINT; a second such signal ends the
/// process at once. Must run on the worker's runtime.
fn stop_on_signals(mut stop: watch::Receiver<bool>) -> Result<watch::Receiver<bool>, ClusterError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.changed() => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(true);
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("multiproc-nats worker {}: a second signal: ending without draining", std::process::id());
        std::process::exit(130);
    });
    Ok(rx)
}

/// Makes this program a worker when the environment asks for it: with
/// `MULTIPROC_NATS_WORKER=1`, it serves the pool the environment names (see
/// [`WorkerConfig::from_env`]) and exits, never returning; otherwise it returns at once.
///
/// Call it right after `multiproc::init()` in `main`.
///
/// ```no_run
/// fn main() {
///     multiproc::init();
///     multiproc_nats::init(); // with MULTIPROC_NATS_WORKER=1 this process serves, then exits
///     // ... the submitting program
/// }
/// ```
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
