//! What a worker runs its tasks on: the [`TaskRunner`] seam, and [`ProcessRunner`], which
//! runs each task in a child process so that a crashing task costs only that task.
//!
//! A runner backed by multiproc's local `Pool` goes here too: it submits the task's raw
//! code and argument to the pool and blocks on the pool's result.

use std::sync::Mutex;
use std::time::Duration;

use multiproc::remote::{RemoteTask, RunError, TaskChild};

use crate::envelope::{RemoteError, host_name};

/// One task as a worker received it, checked to be of this very build.
#[derive(Debug, Clone, Copy)]
pub struct Task<'a> {
    /// The task's id within its client.
    pub id: u64,
    /// The build fingerprint of the task (equal to this program's).
    pub fingerprint: u64,
    /// Offset of the user's function.
    pub function: i64,
    /// Offset of its trampoline.
    pub trampoline: i64,
    /// The function's name, for messages.
    pub function_name: &'a str,
    /// The encoded argument.
    pub arg: &'a [u8],
    /// The task's time limit: past it, the runner kills what runs it.
    pub timeout: Option<Duration>,
}

/// What a runner says about one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The encoded result, or why there is none.
    pub result: Result<Vec<u8>, RemoteError>,
    /// The pid of the process that ran the task.
    pub process_pid: Option<u32>,
}

/// Runs the tasks a worker receives: raw task in, raw result (or an error) out.
///
/// The worker calls [`run`](TaskRunner::run) from [`slots`](TaskRunner::slots) threads
/// at once, each passing its own slot number, and never has more tasks in hand than slots.
pub trait TaskRunner: Send + Sync + 'static {
    /// How many tasks it runs at once.
    fn slots(&self) -> usize;

    /// Runs one task to its end, blocking; `slot` is in `0..slots()`, and no two calls
    /// run with the same slot at once.
    fn run(&self, slot: usize, task: &Task<'_>) -> RunReport;
}

/// Runs each task in a child process of this program (the same build), one task at a
/// time per child and one child per slot. A task that panics leaves its child running;
/// one that crashes it, or passes its timeout, costs that child, which the next task
/// of the slot replaces.
///
/// The worker process itself must have called `multiproc::init()` first in `main`.
#[derive(Debug)]
pub struct ProcessRunner {
    children: Vec<Mutex<Option<TaskChild>>>,
    host: String,
    pid: u32,
}

impl ProcessRunner {
    /// A runner with `slots` child processes, started now: this fails at once when a
    /// child cannot start (for instance when `multiproc::init()` was not called).
    pub fn start(slots: usize) -> Result<ProcessRunner, multiproc::Error> {
        let runner = ProcessRunner::new(slots);
        for (slot, child) in runner.children.iter().enumerate() {
            *child.lock().unwrap_or_else(|e| e.into_inner()) = Some(TaskChild::start(&slot_name(slot))?);
        }
        Ok(runner)
    }

    /// A runner with `slots` child processes, started when first needed.
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
        let mut held = self.children[slot].lock().unwrap_or_else(|e| e.into_inner());
        if held.as_ref().is_none_or(|c| !c.is_usable()) {
            *held = None;
            match TaskChild::start(&slot_name(slot)) {
                Ok(child) => *held = Some(child),
                Err(e) => {
                    let error =
                        RemoteError::Spawn { host: self.host.clone(), worker_pid: self.pid, message: e.to_string() };
                    return RunReport { result: Err(error), process_pid: None };
                }
            }
        }
        let child = held.as_mut().expect("a child was just made sure of");
        let pid = child.pid();
        let remote = RemoteTask {
            fingerprint: task.fingerprint,
            function: task.function,
            trampoline: task.trampoline,
            function_name: task.function_name,
            arg: task.arg,
        };
        let result = child.run(&remote, task.timeout).map_err(|e| self.remote_error(e));
        if !child.is_usable() {
            *held = None;
        }
        RunReport { result, process_pid: Some(pid) }
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
            RunError::Died { pid, exitcode, .. } => RemoteError::WorkerDied { host, worker_pid, pid, exitcode },
            RunError::Timeout { pid, after, .. } => RemoteError::Timeout { host, worker_pid, pid, after },
            RunError::WrongBinary { task, this, .. } => {
                RemoteError::WrongBinary { host, worker_pid, client: task, worker: this }
            }
            // A broken child is as good as a dead one for the task.
            RunError::Protocol { pid, .. } => RemoteError::WorkerDied { host, worker_pid, pid, exitcode: -9 },
            other => RemoteError::Spawn { host, worker_pid, message: other.to_string() },
        }
    }
}
