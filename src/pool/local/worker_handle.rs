//! A worker as the driver sees it: its process, its socket, what it holds; how one is
//! started and how a new one's first answer is awaited.

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use super::lane::Link;
use super::protocol::*;
use crate::pool::error::PoolError;
use crate::pool::submit::Job;
use crate::spawn::{self, ChildProcess, ChildSpec};
use crate::sys::mem::SharedCounters;
use crate::wire::{FrameError, codec};

/// How the pool's workers are made.
pub(crate) struct WorkerConfig {
    pub(crate) processes: usize,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) max_memory: Option<u64>,
    pub(crate) address_space: Option<u64>,
    pub(crate) initializer: Option<(i64, i64, Vec<u8>)>,
    pub(crate) initializer_name: &'static str,
    pub(crate) spec: ChildSpec,
    /// A task killed for its timeout is retried like one whose worker died.
    pub(crate) retry_timeouts: bool,
    /// When a task is told to stop (`multiproc::task::cancelled`), from when its worker takes it.
    pub(crate) soft_timeout: Option<std::time::Duration>,
    /// With [`StartMethod::ForkServer`](crate::StartMethod): the template workers are
    /// forked from (dropped, so killed, with the last holder of this configuration).
    pub(crate) fork_server: Option<std::sync::Arc<spawn::forkserver::ForkServer>>,
}

/// Why the driver itself ended a worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Leaving {
    /// Asked to stop (the pool is closed and drained).
    Stopped,
    /// It said it retires (max tasks or memory) after the results it sent.
    Retired(Retire),
    /// Its initializer failed.
    InitFailed,
    Killed(Kill),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kill {
    Timeout(Duration),
    Cancel,
    Protocol,
    /// Its socket was closed (by one of its tasks) and it did not exit.
    ConnectionLost,
}

pub(crate) struct Held {
    pub(crate) id: u64,
    pub(crate) job: Job,
}

/// A started worker as the driver sees it.
pub(crate) struct Worker {
    pub(crate) name: String,
    pub(crate) process: ChildProcess,
    /// Its socket; `None` while parked in the express lane or lent to a caller.
    pub(crate) link: Option<Link>,
    /// Unique in the pool (the worker's number): how the lane names it.
    pub(crate) serial: u64,
    /// Its pidfd fired while its link was lent: not polled until the link is back.
    pub(crate) exited_while_lent: bool,
    pub(crate) counters: SharedCounters,
    pub(crate) held: VecDeque<Held>,
    /// Items answered so far: the position, in the worker's item stream, of the first held item.
    pub(crate) answered: u64,
    /// Tasks sent that count against `max_tasks` (those taken back do not).
    pub(crate) tasks_sent: u64,
    /// Positions of the tasks the driver sent it, modulo 2³² (see `claim`).
    pub(crate) positions: u32,
    /// The `skip_until` the driver last set in its claim word: tasks sent from there on
    /// may be taken back.
    pub(crate) skip_until: u32,
    /// Tasks were taken back from it: it gets no more until the tasks it kept (claimed:
    /// the long one, and any whose results are on their way) have answered; new ones
    /// would only queue behind the long one again.
    pub(crate) robbed: bool,
    /// Skip notices it owes, one per task taken back and not yet read past. Until they
    /// came it is not lent to a caller's express call: the caller would read a notice
    /// where it waits for its result.
    pub(crate) skips_due: u32,
    pub(crate) ready: bool,
    pub(crate) init_error: Option<String>,
    pub(crate) leaving: Option<Leaving>,
    /// When the oldest held task became the oldest (≈ when it started).
    pub(crate) since: Instant,
    /// When its socket ended (it closed it, or it is exiting). The pidfd says when the
    /// process is gone; one that keeps running this long after is killed.
    pub(crate) eof: Option<Instant>,
}

impl Worker {
    /// Its socket ended: nothing more can come from it.
    pub(crate) fn ended(&mut self) {
        self.eof.get_or_insert_with(Instant::now);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Never leave a process behind, whatever path dropped it.
        let _ = self.process.kill_and_reap();
    }
}

/// Starts worker number `n` and sends it its setup (it answers READY later). `watch`
/// gets the child's pidfd as soon as it exists, before its handshake.
pub(crate) fn start_worker(
    cfg: &WorkerConfig,
    n: u32,
    watch: impl FnOnce(BorrowedFd<'_>),
) -> Result<Worker, crate::Error> {
    let mut spec = cfg.spec.clone();
    spec.name = format!("PoolWorker-{n}");
    spec.identity.push(n);
    spec.isolation.limits = spec.isolation.limits.for_child(n);
    if let Some(server) = &cfg.fork_server {
        spec.isolation.guarded_subtree = server.guarded_subtree().cloned();
    }
    // Everything that can fail without a child fails first; once the child exists it is
    // owned by a `Worker`, whose drop kills and reaps it, whatever fails next (a start
    // cancelled while it sends the setup must not leave a zombie).
    let counters = SharedCounters::create(SLOTS)?;
    let setup = Setup {
        max_tasks: cfg.max_tasks,
        max_memory: cfg.max_memory,
        address_space: cfg.address_space,
        initializer: cfg.initializer.clone(),
    };
    let head = codec::encode(&setup)?;
    let memfd = counters.fd().try_clone_to_owned()?;
    let fork = cfg.fork_server.as_ref().map(|server| {
        move |theirs: &std::os::unix::net::UnixStream, cgroup: Option<BorrowedFd<'_>>| server.fork(theirs, cgroup)
    });
    let spawned = spawn::start_via(
        super::worker::worker_entry,
        "multiproc::pool::worker",
        &spec,
        |_| Ok(()),
        |child| watch(child.pidfd()),
        fork.as_ref().map(|f| f as spawn::Fork<'_>),
    )?;
    let pid = spawned.process.pid();
    let mut worker = Worker {
        name: spec.name,
        process: spawned.process,
        link: Some(spawned.channel),
        serial: n as u64,
        exited_while_lent: false,
        counters,
        held: VecDeque::new(),
        answered: 0,
        tasks_sent: 0,
        positions: 0,
        skip_until: 0,
        skips_due: 0,
        robbed: false,
        ready: false,
        init_error: None,
        leaving: None,
        since: Instant::now(),
        eof: None,
    };
    let link = worker.link.as_mut().expect("just set");
    link.writer
        .queue_parts(KIND_SETUP, &head, &[], &[memfd])
        .and_then(|()| link.writer.flush(Instant::now().checked_add(cfg.spec.start_timeout)))
        .map_err(|source| crate::Error::Protocol { pid, source })?;
    Ok(worker)
}

/// Waits for a new worker's READY (used by `build` when there is an initializer, so a
/// failing initializer fails the build).
pub(crate) fn await_ready(cfg: &WorkerConfig, w: &mut Worker) -> Result<(), PoolError> {
    let deadline = Instant::now().checked_add(cfg.spec.start_timeout);
    let pid = w.process.pid();
    let fail = |reason: String| PoolError::Initializer {
        initializer: cfg.initializer_name,
        worker: w.name.clone(),
        pid,
        reason,
    };
    let Some(link) = w.link.as_mut() else {
        return Err(fail("its socket was not with the pool".into()));
    };
    let frame = match link.reader.recv(deadline) {
        Ok(f) => f,
        Err(FrameError::TimedOut) => return Err(fail(format!("no answer within {:?}", cfg.spec.start_timeout))),
        Err(_) => {
            let code = w.process.wait_timeout(Some(Duration::from_secs(5))).ok().flatten();
            let how = code.map(crate::error::describe_exit).unwrap_or_else(|| "an unknown cause".into());
            // What it said before it went (e.g. it could not enter its sandbox).
            let said = match crate::pool::last_words::read(&w.counters) {
                Some(crate::pool::last_words::LastWords::Cause(c)) => format!(": {c}"),
                _ => String::new(),
            };
            return Err(fail(format!("the worker died with {how}{said}")));
        }
    };
    match frame.kind {
        KIND_READY => {
            w.ready = true;
            Ok(())
        }
        KIND_INIT_FAILED => Err(fail(frame.decode::<String>().unwrap_or_else(|e| e.to_string()))),
        k => Err(fail(format!("unexpected frame kind {k:#04x}"))),
    }
}
