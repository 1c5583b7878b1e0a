//! The engine behind a pool's front, chosen once when the pool is built: the local
//! engine (worker processes fed by a driver thread, `local`) or a remote one (a
//! [`Dispatch`] that runs batches elsewhere, e.g. a cluster). The front (`Pool`, its
//! handles, submission and map encoding) talks to the engine only through [`Shared`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::dispatch::{Batch, Dispatch};
use super::error::TaskError;
use super::local::Local;
use super::local::express::Express;
use super::stats::PoolStats;
use super::submit::Job;

/// What the front and its handles share: the defaults of every task and the engine.
pub(crate) struct Shared {
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) default_retries: u32,
    pub(crate) engine: Engine,
}

/// Where a pool's work runs.
pub(crate) enum Engine {
    /// This machine's worker processes.
    Local(Local),
    /// Another backend (see `dispatch`): no driver, no workers, no express lane.
    Remote(Remote),
}

/// A remote engine: the dispatch and whether the pool still takes work.
pub(crate) struct Remote {
    dispatch: Arc<dyn Dispatch>,
    gate: Mutex<Gate>,
}

#[derive(Default, Clone, Copy)]
struct Gate {
    closed: bool,
    terminate: bool,
}

impl Remote {
    pub(crate) fn dispatch(&self) -> &dyn Dispatch {
        &*self.dispatch
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&self, jobs: impl IntoIterator<Item = Job>, more: bool) -> Result<(), Vec<Job>> {
        {
            let gate = self.gate();
            if gate.terminate || (gate.closed && !more) {
                return Err(jobs.into_iter().collect());
            }
        }
        for job in jobs {
            self.dispatch.dispatch(Batch::new(job));
        }
        Ok(())
    }
}

impl Engine {
    pub(crate) fn remote(dispatch: Arc<dyn Dispatch>) -> Engine {
        Engine::Remote(Remote { dispatch, gate: Mutex::default() })
    }
}

impl Shared {
    /// Whether a wait for a result of this pool would block the very thread that
    /// delivers it (a callback's): such a wait fails at once instead
    /// ([`TaskError::WaitInCallback`](crate::TaskError::WaitInCallback)).
    pub(crate) fn waiting_would_deadlock(&self) -> bool {
        match &self.engine {
            Engine::Local(local) => local.on_driver_thread(),
            Engine::Remote(remote) => remote.dispatch.delivers_on_this_thread(),
        }
    }

    /// Queues jobs; gives them back if the pool accepts no more. `more` is for a running
    /// `imap`, which may go on feeding a closed pool until it has drained.
    pub(crate) fn submit(&self, jobs: impl IntoIterator<Item = Job>, more: bool) -> Result<(), Vec<Job>> {
        match &self.engine {
            Engine::Local(local) => local.submit(jobs, more),
            Engine::Remote(remote) => remote.submit(jobs, more),
        }
    }

    /// Submits `job`, or fails its items as [`TaskError::Closed`] if the pool takes no more.
    pub(crate) fn submit_or_fail(&self, job: Job, more: bool) {
        if let Err(jobs) = self.submit([job], more) {
            for job in jobs {
                job.fail(|task| TaskError::Closed { task });
            }
        }
    }

    /// Runs one small item on an idle local worker from the calling thread, if the
    /// engine has such a lane and a worker is free (see `local::express`).
    pub(crate) fn express<R: serde::de::DeserializeOwned>(
        &self,
        task: &'static str,
        code: (i64, i64),
        item: &[u8],
        timeout: Option<Duration>,
        make_job: impl FnOnce() -> Job,
    ) -> Express<R> {
        match &self.engine {
            Engine::Local(local) => local.express(task, code, item, timeout, make_job),
            Engine::Remote(_) => Express::Unavailable,
        }
    }

    /// A handle was cancelled: the engine looks for its items.
    pub(crate) fn request_cancel(&self) {
        match &self.engine {
            Engine::Local(local) => local.request_cancel(),
            Engine::Remote(remote) => remote.dispatch.cancel(),
        }
    }

    /// A snapshot of the pool's counters.
    pub(crate) fn stats(&self) -> PoolStats {
        match &self.engine {
            Engine::Local(local) => local.stats(),
            Engine::Remote(remote) => remote.dispatch.stats(),
        }
    }

    /// Stops taking work; what was submitted still runs.
    pub(crate) fn close(&self) {
        match &self.engine {
            Engine::Local(local) => local.close(),
            Engine::Remote(remote) => remote.gate().closed = true,
        }
    }

    /// Whether the pool was closed or terminated (what `join` requires).
    pub(crate) fn stopping(&self) -> bool {
        match &self.engine {
            Engine::Local(local) => local.stopping(),
            Engine::Remote(remote) => {
                let gate = *remote.gate();
                gate.closed || gate.terminate
            }
        }
    }

    /// Waits until everything submitted has ended and the engine has stopped.
    pub(crate) fn join(&self) {
        match &self.engine {
            Engine::Local(local) => local.join(),
            Engine::Remote(remote) => remote.dispatch.join(),
        }
    }

    /// Ends everything now: unfinished tasks fail as terminated.
    pub(crate) fn terminate(&self) {
        match &self.engine {
            Engine::Local(local) => local.terminate(),
            Engine::Remote(remote) => {
                remote.gate().terminate = true;
                remote.dispatch.terminate();
            }
        }
    }
}
