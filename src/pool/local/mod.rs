//! The local engine: worker processes (`PoolWorker-N`, the same executable started
//! again) fed by one driver thread per pool.
//!
//! - `driver`: the thread that owns every worker's socket and process (see there how
//!   work flows and how a death costs one task);
//! - `worker_handle`: a worker as the driver sees it, and how one starts;
//! - `starts`: workers being started in helper threads;
//! - `lane` and `express`: how a synchronous `apply` borrows an idle worker without the
//!   driver;
//! - `protocol`: the messages between the driver and a worker;
//! - `claim`: how the driver takes back tasks a busy worker has not started;
//! - `worker`: the child's side.
//!
//! Nothing here knows the front (`Pool`, its handles): work comes in as `submit::Job`s
//! and outcomes leave through their sinks.

mod claim;
mod driver;
pub(crate) mod express;
mod lane;
mod outbox;
mod protocol;
mod starts;
mod state;
mod worker;
pub(crate) mod worker_handle;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::de::DeserializeOwned;

use self::driver::Driver;
use self::express::Express;
use self::lane::Lanes;
use self::starts::Started;
use self::state::State;
use self::worker_handle::{Worker, WorkerConfig, await_ready};
use crate::pool::error::PoolError;
use crate::pool::stats::PoolStats;
use crate::pool::submit::Job;

/// What the workers' sandbox confines, for the stats.
fn sandbox_in_effect(_cfg: &WorkerConfig) -> Option<String> {
    #[cfg(feature = "sandbox")]
    return _cfg.spec.isolation.sandbox.as_ref().map(|s| s.in_effect());
    #[cfg(not(feature = "sandbox"))]
    None
}

/// A running local engine: its shared state and its driver thread.
pub(crate) struct Local {
    state: Arc<State>,
    driver: Mutex<Option<JoinHandle<()>>>,
}

impl Local {
    /// Whether this is the pool's driver thread (a callback is running): a wait for one of
    /// the pool's results here could never end, since this thread delivers them.
    pub(crate) fn on_driver_thread(&self) -> bool {
        self.state.stats.driver.get() == Some(&std::thread::current().id())
    }

    /// Starts the workers (all at once, each in its own thread) and the driver; returns
    /// once one worker is up, or, with an initializer, once every worker has run it.
    /// On failure no process is left behind.
    pub(crate) fn start(cfg: WorkerConfig) -> Result<Local, PoolError> {
        let cfg = Arc::new(cfg);
        // A worker that retires by itself must be heard at once: no express lane.
        let lanes = Lanes::new(cfg.max_tasks.is_none() && cfg.max_memory.is_none(), cfg.soft_timeout);
        let state = Arc::new(State::new(lanes)?);
        let (workers, spawning) = first_workers(&state, &cfg)?;
        let stats = PoolStats {
            workers_started: workers.len() as u64,
            workers_alive: workers.len(),
            worker_pids: workers.iter().map(|w| w.process.pid()).collect(),
            containment: workers.first().map(|w| w.process.containment()).unwrap_or_default(),
            sandbox: sandbox_in_effect(&cfg),
            fork_server_pid: cfg.fork_server.as_ref().and_then(|s| s.template_pid()),
            fork_servers_started: cfg.fork_server.as_ref().map_or(0, |s| s.templates_started()),
            ..PoolStats::default()
        };
        state.stats.publish(&stats, true);
        let driver = Driver::new(state.clone(), cfg, workers, spawning, stats);
        let handle = spawn_driver(state.clone(), driver)?;
        Ok(Local { state, driver: Mutex::new(Some(handle)) })
    }

    pub(crate) fn submit(&self, jobs: impl IntoIterator<Item = Job>, more: bool) -> Result<(), Vec<Job>> {
        self.state.submit(jobs, more)
    }

    /// See `express::run`.
    pub(crate) fn express<R: DeserializeOwned>(
        &self,
        task: &'static str,
        code: (i64, i64),
        item: &[u8],
        timeout: Option<Duration>,
        make_job: impl FnOnce() -> Job,
    ) -> Express<R> {
        express::run(&self.state, task, code, item, timeout, make_job)
    }

    pub(crate) fn request_cancel(&self) {
        self.state.request_cancel();
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.state.stats.snapshot(|| self.state.wake_always())
    }

    pub(crate) fn close(&self) {
        self.state.inbox().closed = true;
        self.state.lanes.refuse();
        self.state.wake_always();
    }

    pub(crate) fn stopping(&self) -> bool {
        let inbox = self.state.inbox();
        inbox.closed || inbox.terminate
    }

    /// Waits for the driver to end. On the driver's own thread (a callback that terminated
    /// the pool, or dropped its last handle) it cannot: the driver ends by itself once the
    /// callback returns, killing and reaping the workers as it does.
    pub(crate) fn join(&self) {
        if self.on_driver_thread() {
            return;
        }
        let handle = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    pub(crate) fn terminate(&self) {
        self.state.inbox().terminate = true;
        self.state.lanes.refuse();
        self.state.wake_always();
        self.join();
    }
}

/// Launches every first start at once (their execs and handshakes overlap) and waits
/// for the first worker up (with an initializer: for all, and their READY). Returns the
/// workers up and how many starts are still running.
fn first_workers(state: &Arc<State>, cfg: &Arc<WorkerConfig>) -> Result<(Vec<Worker>, usize), PoolError> {
    let has_init = cfg.initializer.is_some();
    let mut launched = 0;
    let mut failure: Option<crate::Error> = None;
    for n in 1..=cfg.processes as u32 {
        match state.launch(cfg.clone(), n) {
            Ok(()) => launched += 1,
            Err(e) => {
                failure = Some(crate::Error::Io(e));
                break;
            }
        }
    }
    let ended = if failure.is_none() { state.starts.wait_first(launched, has_init) } else { Vec::new() };
    let spawning = launched - ended.len();
    let mut workers = adopt(ended, &mut failure, cfg.processes);
    if let Some(e) = failure {
        // Kill the starts still running and wait for them, so nothing is left behind.
        state.starts.cancel();
        drop(state.starts.wait_all(spawning));
        return Err(e.into());
    }
    if has_init {
        for w in &mut workers {
            await_ready(cfg, w)?;
        }
    }
    Ok((workers, spawning))
}

/// The workers of the starts that ended; the first failure goes to `failure`.
fn adopt(ended: Vec<Started>, failure: &mut Option<crate::Error>, capacity: usize) -> Vec<Worker> {
    let mut workers = Vec::with_capacity(capacity);
    for (_, r) in ended {
        match r {
            Some(Ok(w)) => workers.push(w),
            Some(Err(e)) => {
                failure.get_or_insert(e);
            }
            None => {}
        }
    }
    workers
}

fn spawn_driver(state: Arc<State>, driver: Driver) -> Result<JoinHandle<()>, PoolError> {
    let handle = std::thread::Builder::new()
        .name("multiproc-pool".into())
        .spawn(move || {
            let _ = state.stats.driver.set(std::thread::current().id());
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| driver.run()));
            if ran.is_err() {
                // A bug in the driver: refuse new work and stop waiting for statistics
                // (its workers were killed and reaped as the driver unwound).
                state.inbox().finished = true;
                state.stats.finish();
            }
        })
        .map_err(crate::Error::Io)?;
    Ok(handle)
}
