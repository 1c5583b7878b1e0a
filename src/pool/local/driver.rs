//! The driver: one thread per pool that owns every worker's socket and process.
//!
//! It polls the worker sockets (results in, tasks out, never blocking on either), the
//! workers' pidfds (a death is seen at once), a wake-up descriptor (new submissions,
//! cancellations, close, terminate) and the nearest task deadline. Each worker holds a
//! small window of tasks, sized from the measured task time: one at a time for slow
//! tasks (as Python's pool), up to 1024 for tiny ones so the worker never waits for the
//! parent. Workers run their tasks in order, so on a death the shared counters name the
//! one item that was running; everything else the worker held is queued again.
//!
//! A window has a cost: the tasks queued behind one that runs long wait for it. So when
//! a worker idles with nothing pending while another's task has run long (twenty task
//! times, and at least 2 ms: `chunk::reclaim_in`), the driver takes back the tasks that
//! worker has not started (`claim`: each is either claimed by the worker or revoked,
//! never both) and queues them first, in order, for the idle ones. The worker skips
//! those it reads afterwards; it gets nothing more until its long task answers. A task
//! taken back does not count against `max_tasks_per_child` (the worker never runs it),
//! starts no item (the counters' blame is unchanged), and its time limit starts again
//! where it runs.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::claim;
use super::lane::{GaveUp, Link, Parked};
use super::protocol::*;
use super::starts::Started;
use super::state::State;
use super::worker_handle::{Held, Kill, Leaving, Worker, WorkerConfig};
use crate::pool::chunk;
use crate::pool::error::{Attempt, TaskError};
use crate::pool::last_words::{self, LastWords};
use crate::pool::stats::PoolStats;
use crate::pool::submit::{Job, Tally};
use crate::spawn::ChildProcess;
use crate::sys::event::{PollFd, PollFlags, poll};
use crate::sys::mem::Mapped;
use crate::wire::frame::spilled;
use crate::wire::{FrameError, codec, fds};

/// Consecutive worker start failures after which the pool stops restarting workers.
const MAX_START_FAILURES: u32 = 3;
/// How long a worker whose socket ended may take to exit before it is killed (an exit
/// takes well under a millisecond; one that closed its socket and kept running never does).
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// A worker is sent no more tasks while this much of what it was sent is still in the
/// driver, not yet taken by its socket.
const UNSENT_IN_FLIGHT: usize = 1 << 20;
/// The cause named for a worker killed after its socket ended without it exiting.
const CONNECTION_LOST_HINT: &str = "the worker's connection to the pool ended while it ran this task and it did not exit, so it was killed; a task may have closed or shut down that socket";

pub(crate) struct Driver {
    state: Arc<State>,
    cfg: Arc<WorkerConfig>,
    workers: Vec<Worker>,
    pending: VecDeque<Job>,
    next_id: u64,
    next_worker: u32,
    spawning: usize,
    closed: bool,
    terminating: bool,
    start_failures: u32,
    broken: Option<String>,
    /// Measured nanoseconds per task and per item (moving averages; 0 = not yet).
    task_ns: u64,
    item_ns: u64,
    stats: PoolStats,
    stats_dirty: bool,
}

impl Driver {
    /// `spawning`: starts already launched (workers `workers.len() + 1 ..`) whose results
    /// will arrive through `state.starts`.
    pub(crate) fn new(
        state: Arc<State>,
        cfg: Arc<WorkerConfig>,
        workers: Vec<Worker>,
        spawning: usize,
        stats: PoolStats,
    ) -> Driver {
        let next_worker = (workers.len() + spawning) as u32 + 1;
        Driver {
            state,
            cfg,
            workers,
            pending: VecDeque::new(),
            next_id: 1,
            next_worker,
            spawning,
            closed: false,
            terminating: false,
            start_failures: 0,
            broken: None,
            task_ns: 0,
            item_ns: 0,
            stats,
            stats_dirty: true,
        }
    }

    pub(crate) fn run(mut self) {
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve()));
        if let Err(panic) = served {
            // A bug in the driver itself (user code runs guarded): every item still
            // pending or running settles as terminated rather than waiting forever.
            let message = crate::pool::guard::panic_message(panic.as_ref());
            eprintln!("multiproc pool: the pool's driver failed ({message}); its tasks are terminated");
            self.terminating = true;
            self.terminate_all();
        }
        self.finish();
    }

    /// The driver's loop, until the pool is closed and drained or terminated.
    fn serve(&mut self) {
        loop {
            let mut reclaim_due = None;
            let cancel = self.take_inbox();
            if self.terminating {
                self.state.starts.cancel();
                self.terminate_all();
                // Workers whose link a caller holds were killed; they go once it is back.
                if self.spawning == 0 && self.workers.is_empty() {
                    break;
                }
            } else {
                if cancel {
                    self.drop_cancelled();
                }
                self.fail_if_broken();
                self.replace_workers();
                self.dispatch();
                reclaim_due = self.reclaim_queued();
                self.stop_when_drained();
            }
            self.flush_all();
            let deadline = earliest(self.enforce_deadlines(), reclaim_due);
            self.publish_stats();
            if (self.closed || self.terminating) && self.workers.is_empty() && self.spawning == 0 && self.idle() {
                break;
            }
            self.park_idle();
            self.wait(deadline);
        }
    }

    /// Nothing pending and nothing running. (Meaningful once the lane is shut: a link
    /// still out is then a task a caller runs.)
    fn idle(&self) -> bool {
        self.pending.is_empty() && self.workers.iter().all(|w| w.held.is_empty() && w.link.is_some())
    }

    /// Opens the express lane with the workers that have nothing to do, if the driver
    /// has nothing to give them.
    fn park_idle(&mut self) {
        let lanes = &self.state.lanes;
        if !lanes.enabled() || self.closed || self.terminating || self.broken.is_some() || !self.pending.is_empty() {
            return;
        }
        let mut parked = Vec::new();
        for w in &mut self.workers {
            let Some(link) = &w.link else { continue };
            let quiet = link.writer.pending() == 0 && link.reader.buffered() == 0 && w.skips_due == 0;
            if quiet && w.ready && w.leaving.is_none() && w.eof.is_none() && w.held.is_empty() {
                let link = w.link.take().expect("checked above");
                parked.push(Parked { serial: w.serial, link, done: 0 });
            }
        }
        lanes.park(parked);
    }

    /// Shuts the express lane and takes the parked links back.
    fn unpark_all(&mut self) {
        for p in self.state.lanes.shut() {
            self.link_home(p);
        }
    }

    /// A link is back from the lane; returns its worker's index.
    fn link_home(&mut self, p: Parked) -> Option<usize> {
        let wi = self.workers.iter().position(|w| w.serial == p.serial)?;
        let w = &mut self.workers[wi];
        w.answered += p.done;
        w.link = Some(p.link);
        w.exited_while_lent = false;
        Some(wi)
    }

    /// Links callers gave back: clean ones, and ones with a task that did not finish,
    /// which the driver now holds as its own (to reap, blame, retry or report).
    fn take_returned(&mut self) {
        for r in self.state.lanes.take_returned() {
            let Some(wi) = self.link_home(r.parked) else { continue };
            let Some((id, job, why)) = r.failed else { continue };
            let w = &mut self.workers[wi];
            if w.held.is_empty() {
                w.since = Instant::now();
            }
            w.tasks_sent += 1;
            w.held.push_back(Held { id, job });
            match why {
                GaveUp::TimedOut(timeout) => {
                    w.leaving = Some(Leaving::Killed(Kill::Timeout(timeout)));
                    let _ = w.process.signal(libc::SIGKILL);
                    self.stats.workers_killed_for_timeout += 1;
                    self.stats_dirty = true;
                }
                GaveUp::Broken { protocol: true } => {
                    self.protocol_error(wi, "a frame that is not its result");
                }
                // Its socket ended: its pidfd will say how it ended. It is not killed here:
                // a worker whose task closed its socket says why in its last words before
                // it exits, and one that keeps running is killed after `EXIT_GRACE`.
                GaveUp::Broken { protocol: false } => w.ended(),
            }
        }
    }

    /// Moves submissions in; returns whether a cancellation was asked for.
    fn take_inbox(&mut self) -> bool {
        let spawned: Vec<Started>;
        let cancel;
        {
            let mut inbox = self.state.inbox.lock().unwrap_or_else(|e| e.into_inner());
            if self.pending.is_empty() {
                std::mem::swap(&mut self.pending, &mut inbox.jobs);
            } else {
                self.pending.extend(inbox.jobs.drain(..));
            }
            self.closed |= inbox.closed;
            self.terminating |= inbox.terminate;
            cancel = std::mem::take(&mut inbox.cancel);
            spawned = self.state.starts.take();
        }
        // Work for the driver, or the end: it needs every idle worker back.
        if !self.pending.is_empty() || self.closed || self.terminating {
            self.unpark_all();
        }
        self.take_returned();
        for (n, r) in spawned {
            self.spawning -= 1;
            // A start cancelled at the pool's end: its process is already reaped.
            let Some(r) = r else { continue };
            match r {
                Ok(w) => {
                    self.stats.workers_started += 1;
                    self.stats_dirty = true;
                    self.workers.push(w);
                }
                Err(e) => self.start_failed(format!("PoolWorker-{n} could not start: {e}")),
            }
        }
        cancel
    }

    fn start_failed(&mut self, reason: String) {
        self.start_failures += 1;
        self.stats.initializer_failures += 1;
        self.stats_dirty = true;
        log_event(&format!("multiproc pool: {reason}"));
        if self.start_failures >= MAX_START_FAILURES && self.broken.is_none() {
            self.broken = Some(format!(
                "{} workers in a row failed to start, so the pool stopped restarting them (last: {reason})",
                self.start_failures
            ));
        }
    }

    fn fail_if_broken(&mut self) {
        let Some(reason) = &self.broken else { return };
        let reason = reason.clone();
        while let Some(job) = self.pending.pop_front() {
            let task = job.sub.task;
            self.fail_job(&job, |_| TaskError::PoolBroken { task, reason: reason.clone() });
        }
    }

    /// Starts replacements so that `processes` workers run while there is work (or the
    /// pool is open); in a helper thread, so the driver never waits for an exec.
    fn replace_workers(&mut self) {
        if self.broken.is_some() {
            return;
        }
        let want = if self.closed && self.idle() { 0 } else { self.cfg.processes };
        let have = self.workers.iter().filter(|w| w.leaving.is_none()).count() + self.spawning;
        for _ in have..want {
            let n = self.next_worker;
            self.next_worker += 1;
            self.spawning += 1;
            let started = self.state.launch(self.cfg.clone(), n);
            if let Err(e) = started {
                self.spawning -= 1;
                self.start_failed(format!("cannot start a thread to spawn a worker: {e}"));
            }
        }
    }

    fn chunk_for(&self, job: &Job) -> u32 {
        let k = chunk::chunk_items(job.sub.chunking, job.count, self.item_ns, self.cfg.processes);
        chunk::one_fd_item(k, job.first, job.sub.fds().iter().map(|(i, _)| *i))
    }

    /// Sends pending jobs, each to the worker that holds the fewest tasks (`chunk::
    /// least_loaded`), a stripe at a time (`chunk::stripe`: a worker that took a task
    /// takes the next ones until it holds a multiple of the stripe), until none is
    /// pending or no worker takes more.
    fn dispatch(&mut self) {
        let window = self.dispatch_window();
        let stripe = chunk::stripe(window);
        let now = Instant::now();
        let mut striping: Option<usize> = None;
        while let Some(job) = self.pending.pop_front() {
            let going_on = striping.filter(|&wi| !job.isolate && self.takes_more(&self.workers[wi], window));
            let pick = going_on.or_else(|| {
                let loads = self.workers.iter().map(|w| self.takes_more(w, window).then_some(w.held.len()));
                chunk::least_loaded(loads)
            });
            match pick {
                Some(wi) => {
                    if !self.offer(wi, job, window, now) {
                        return;
                    }
                    striping = (!self.workers[wi].held.len().is_multiple_of(stripe)).then_some(wi);
                }
                None if job.sub.sink.cancelled() => self.fail_job(&job, |task| TaskError::Cancelled { task }),
                None => {
                    self.pending.push_front(job);
                    return;
                }
            }
        }
    }

    /// How many tasks a worker may hold now. A deep window only pays when there is plenty
    /// of work: a few items are spread one per worker (counting those still starting), as
    /// Python's pool would.
    fn dispatch_window(&self) -> usize {
        let workers = self.workers.iter().filter(|w| w.leaving.is_none()).count() + self.spawning;
        let pending = &self.pending;
        let items = || pending.iter().map(|j| j.count as usize).sum();
        chunk::spread_window(chunk::window(self.task_ns), pending.len(), items, workers)
    }

    /// Offers the next pending job to worker `wi`: a chunk of it is sent (the rest stays
    /// first in line), or it fails, or it goes back. Returns whether it went anywhere.
    fn offer(&mut self, wi: usize, mut job: Job, window: usize, now: Instant) -> bool {
        if job.sub.sink.cancelled() {
            self.fail_job(&job, |task| TaskError::Cancelled { task });
            return true;
        }
        if !self.takes_more(&self.workers[wi], window) || (job.isolate && !self.workers[wi].held.is_empty()) {
            self.pending.push_front(job);
            return false;
        }
        let k = self.chunk_for(&job);
        if k < job.count {
            self.pending.push_front(job.part(k, job.count - k));
            job.count = k;
        }
        self.send_task(wi, job, now);
        true
    }

    /// Whether worker `w` can take another task now.
    fn takes_more(&self, w: &Worker, window: usize) -> bool {
        let quota_left = self.cfg.max_tasks.is_none_or(|m| w.tasks_sent < m);
        // Large bodies in flight are bounded by bytes too, so their memfds are reused.
        let spill_full =
            !w.held.is_empty() && w.link.as_ref().is_some_and(|l| l.writer.spilled_in_flight() >= SPILLED_IN_FLIGHT);
        // And what its socket has not yet taken stays in the driver's memory: a deep window
        // of tasks that are quick but not small is bounded by bytes.
        let unsent_full = !w.held.is_empty() && w.link.as_ref().is_some_and(|l| l.writer.pending() >= UNSENT_IN_FLIGHT);
        let out = w.leaving.is_some() || w.eof.is_some() || w.link.is_none() || w.robbed;
        // A suspect runs alone: nothing after it until it is answered.
        let isolating = w.held.front().is_some_and(|h| h.job.isolate);
        !(out || isolating || w.held.len() >= window || !quota_left || spill_full || unsent_full)
    }

    /// Takes back the tasks queued behind a task that runs long, for idle workers, when
    /// nothing else is pending (see `claim` for why none runs twice, and
    /// `chunk::reclaim_in` for when); dispatches them. Returns when the next is due.
    fn reclaim_queued(&mut self) -> Option<Instant> {
        if self.terminating || self.broken.is_some() || !self.pending.is_empty() {
            return None;
        }
        let idle = self
            .workers
            .iter()
            .filter(|w| w.ready && w.held.is_empty() && w.leaving.is_none() && w.eof.is_none())
            .count();
        if idle == 0 {
            // The common case on a busy pool: nobody to give tasks to, nothing to time.
            return None;
        }
        let now = Instant::now();
        let mut nearest = None;
        let mut taken = Vec::new();
        for wi in 0..self.workers.len() {
            let w = &self.workers[wi];
            let robbable = w.leaving.is_none() && w.eof.is_none() && w.link.is_some() && w.positions != w.skip_until;
            let queued = if robbable { w.held.len().saturating_sub(1) } else { 0 };
            let running_ns = u64::try_from(now.saturating_duration_since(w.since).as_nanos()).unwrap_or(u64::MAX);
            match chunk::reclaim_in(idle, 0, queued, running_ns, self.task_ns) {
                Some(0) => taken.extend(self.revoke(wi)),
                Some(ns) => nearest = earliest(nearest, now.checked_add(Duration::from_nanos(ns))),
                None => {}
            }
        }
        if !taken.is_empty() {
            self.pending.extend(taken);
            // Parked workers are the idle ones: they come home to take them.
            self.unpark_all();
            self.dispatch();
        }
        nearest
    }

    /// Revokes every task worker `wi` holds and has not started; returns them, in order.
    fn revoke(&mut self, wi: usize) -> Vec<Job> {
        let w = &mut self.workers[wi];
        let n = claim::revoke(w.counters.get(SLOT_CLAIM), w.positions) as usize;
        w.skip_until = w.positions;
        if n > w.held.len() {
            self.protocol_error(wi, "a claim word that names tasks it does not hold");
            return Vec::new();
        }
        let back = w.held.split_off(w.held.len() - n);
        w.skips_due += n as u32;
        if let Some(link) = &mut w.link {
            for h in &back {
                // The worker skips its frame: its memfd is never filled again.
                link.writer.forget_spilled(h.id);
            }
        }
        // The worker runs none of them, so none counts against its quota; it says so
        // for each.
        w.tasks_sent -= n as u64;
        w.robbed = !w.held.is_empty();
        self.stats.tasks_reclaimed += n as u64;
        self.stats_dirty |= n > 0;
        back.into_iter().map(|h| h.job).collect()
    }

    /// Queues `job` as one task on worker `wi`, which then holds it; a job whose argument
    /// cannot be sent fails.
    fn send_task(&mut self, wi: usize, job: Job, now: Instant) {
        let id = self.next_id;
        self.next_id += 1;
        let sub = job.sub.clone();
        let item_fds: &[std::os::fd::OwnedFd] = sub
            .fds()
            .iter()
            .find(|(i, _)| *i >= job.first && *i < job.first + job.count)
            .map(|(_, f)| f.as_slice())
            .unwrap_or(&[]);
        let limits = TimeLimits { soft: self.cfg.soft_timeout, hard: sub.timeout };
        let head = TaskHead { id, trampoline: sub.trampoline, function: sub.function, count: job.count, limits };
        let w = &mut self.workers[wi];
        let writer = &mut w.link.as_mut().expect("a worker that takes more has its link").writer;
        let body = sub.slice(job.first, job.count);
        let spill = Some((KIND_TASK_BIG, SPILL_AT, id));
        match writer.queue_parts_spilling(KIND_TASK, spill, &head.encode(), body, item_fds) {
            Ok(()) => {
                if w.held.is_empty() {
                    w.since = now;
                }
                w.tasks_sent += 1;
                w.positions = w.positions.wrapping_add(1);
                w.held.push_back(Held { id, job });
            }
            Err(e) => {
                let task = sub.task;
                let message = format!("cannot send the argument: {e}");
                self.fail_job(&job, |_| TaskError::Codec { task, message: message.clone() });
            }
        }
    }

    /// Once closed and drained, asks every worker to finish.
    fn stop_when_drained(&mut self) {
        if !self.closed || !self.idle() {
            return;
        }
        // No work can come any more: workers still starting are not waited for.
        self.state.starts.cancel();
        for w in &mut self.workers {
            if let (None, Some(link)) = (w.leaving, &mut w.link) {
                let _ = link.writer.queue_bytes(KIND_STOP, &[]);
                w.leaving = Some(Leaving::Stopped);
            }
        }
    }

    fn flush_all(&mut self) {
        let now = Some(Instant::now());
        for w in &mut self.workers {
            let Some(Link { writer, .. }) = &mut w.link else { continue };
            if writer.pending() > 0 {
                match writer.flush(now) {
                    Ok(()) => writer.shrink_idle(),
                    Err(FrameError::TimedOut) => {}
                    // A worker that cannot be written to is dying: its pidfd tells the rest.
                    Err(_) => w.ended(),
                }
            }
        }
    }

    /// Kills workers whose running task passed its timeout or was cancelled, and those
    /// still running [`EXIT_GRACE`] after their socket ended; returns the nearest deadline
    /// still ahead.
    fn enforce_deadlines(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let mut nearest: Option<Instant> = None;
        for w in &mut self.workers {
            if matches!(w.leaving, Some(Leaving::Killed(_))) {
                continue;
            }
            if let Some(since) = w.eof {
                let due = since + EXIT_GRACE;
                if due <= now {
                    log_event(&format!(
                        "multiproc pool: {} (pid {}) closed its socket but did not exit; killing it",
                        w.name,
                        w.process.pid()
                    ));
                    w.leaving = Some(Leaving::Killed(Kill::ConnectionLost));
                    let _ = w.process.signal(libc::SIGKILL);
                    self.stats_dirty = true;
                    continue;
                }
                nearest = Some(nearest.map_or(due, |n| n.min(due)));
            }
            let Some(front) = w.held.front() else { continue };
            if front.job.sub.sink.cancelled() {
                w.leaving = Some(Leaving::Killed(Kill::Cancel));
                let _ = w.process.signal(libc::SIGKILL);
                self.stats.workers_killed_for_cancel += 1;
                continue;
            }
            let Some(timeout) = front.job.sub.timeout else { continue };
            // A timeout too large to add is no timeout.
            let Some(due) = w.since.checked_add(timeout) else { continue };
            if due <= now {
                w.leaving = Some(Leaving::Killed(Kill::Timeout(timeout)));
                let _ = w.process.signal(libc::SIGKILL);
                self.stats.workers_killed_for_timeout += 1;
                self.stats_dirty = true;
            } else {
                nearest = Some(nearest.map_or(due, |n| n.min(due)));
            }
        }
        nearest
    }

    fn drop_cancelled(&mut self) {
        let mut keep = VecDeque::with_capacity(self.pending.len());
        for job in std::mem::take(&mut self.pending) {
            if job.sub.sink.cancelled() {
                self.fail_job(&job, |task| TaskError::Cancelled { task });
            } else {
                keep.push_back(job);
            }
        }
        self.pending = keep;
    }

    /// Blocks in poll until a socket, a pidfd, the wake-up or the deadline needs us,
    /// then handles what it reported.
    fn wait(&mut self, deadline: Option<Instant>) {
        let timeout = self.poll_timeout(deadline);
        let events = self.poll_workers(timeout);
        self.state.asleep.store(false, Ordering::SeqCst);
        let mut exited = Vec::new();
        for event in events {
            if self.on_event(event) {
                exited.push(event.wi);
            }
        }
        for wi in exited.into_iter().rev() {
            self.reap(wi);
        }
    }

    /// Tells submitters to wake us, then looks once more, so no submission is missed;
    /// returns how long poll may sleep.
    fn poll_timeout(&self, deadline: Option<Instant>) -> Option<Duration> {
        self.state.asleep.store(true, Ordering::SeqCst);
        let busy = {
            let inbox = self.state.inbox();
            !inbox.jobs.is_empty() || inbox.cancel || inbox.closed != self.closed || inbox.terminate != self.terminating
        } || self.state.starts.any_done();
        if busy {
            Some(Duration::ZERO)
        } else {
            deadline.map(|d| d.saturating_duration_since(Instant::now()) + Duration::from_micros(50))
        }
    }

    /// Polls the wake-up and every worker's socket and pidfd; returns what each worker
    /// needs.
    fn poll_workers(&self, timeout: Option<Duration>) -> Vec<Event> {
        let mut fds = self.poll_fds();
        if let Err(e) = poll(&mut fds, timeout) {
            log_event(&format!("multiproc pool: poll failed: {e}"));
            std::thread::sleep(Duration::from_millis(1));
        }
        if !fds[0].revents().is_empty() {
            self.state.wakeup.drain();
        }
        worker_events(fds[1..].iter().map(|f| f.revents()))
    }

    /// The wake-up, then each worker's socket and pidfd. A worker whose link is out has
    /// its place kept by the wake-up descriptor with no events asked, which never reports
    /// anything.
    fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(1 + 2 * self.workers.len());
        fds.push(PollFd::from_borrowed_fd(self.state.wakeup.fd(), PollFlags::IN));
        let placeholder = || PollFd::from_borrowed_fd(self.state.wakeup.fd(), PollFlags::empty());
        for w in &self.workers {
            match &w.link {
                // After its end of file a socket is not polled: poll reports a hang-up
                // whatever was asked, and would spin until the pidfd fires, starving the
                // exiting worker of its CPU.
                Some(link)
                    if w.eof.is_none() && !only_its_end_awaited(w.leaving, w.held.len(), link.writer.pending()) =>
                {
                    let mut flags = PollFlags::IN;
                    if link.writer.pending() > 0 {
                        flags |= PollFlags::OUT;
                    }
                    fds.push(PollFd::from_borrowed_fd(link.reader.fd(), flags));
                }
                _ => fds.push(placeholder()),
            }
            if w.exited_while_lent {
                fds.push(placeholder());
            } else {
                fds.push(PollFd::from_borrowed_fd(w.process.pidfd(), PollFlags::IN));
            }
        }
        fds
    }

    /// Handles what poll said about one worker; returns whether it is to be reaped.
    fn on_event(&mut self, event: Event) -> bool {
        let wi = event.wi;
        if event.readable {
            self.read_results(wi, false);
        }
        if event.writable {
            self.on_writable(wi);
        }
        if event.exited && self.workers[wi].link.is_none() {
            // Parked: take its link back and reap it now. Lent: the caller brings it back.
            match self.state.lanes.unpark(self.workers[wi].serial) {
                Some(p) => {
                    self.link_home(p);
                }
                None => self.workers[wi].exited_while_lent = true,
            }
        }
        event.exited && self.workers[wi].link.is_some()
    }

    fn on_writable(&mut self, wi: usize) {
        let w = &mut self.workers[wi];
        if let Some(link) = &mut w.link
            && let Err(e) = link.writer.flush(Some(Instant::now()))
            && !matches!(e, FrameError::TimedOut)
        {
            w.ended();
        }
    }

    /// Reads the complete frames a worker sent. With `drain`, until the socket is empty
    /// (a worker that exited); otherwise until the read buffer is: poll is level-triggered
    /// and says when more came, so no read ends in `EAGAIN` on the latency path.
    fn read_results(&mut self, wi: usize, drain: bool) {
        // One clock read per batch of results (they arrived together): it stamps them,
        // and as the deadline of each read it makes every read one that does not wait.
        let now = Instant::now();
        let mut first = true;
        while first || drain || self.workers[wi].link.as_ref().is_some_and(|l| l.reader.buffered() > 0) {
            first = false;
            if !self.read_one(wi, now) {
                return;
            }
        }
    }

    /// Reads and handles one frame of worker `wi`; `false` when there is nothing more to
    /// read from it now.
    fn read_one(&mut self, wi: usize, now: Instant) -> bool {
        let w = &mut self.workers[wi];
        let Some(link) = &mut w.link else { return false };
        let frame = match link.reader.recv(Some(now)) {
            Ok(f) => f,
            Err(FrameError::TimedOut) => return false,
            Err(_) => {
                w.ended();
                return false;
            }
        };
        if !matches!(frame.kind, KIND_RESULT | KIND_RESULT_BIG) {
            let message = Message::decode(frame.kind, frame.payload);
            return self.on_message(wi, message);
        }
        let mut frame_fds = frame.fds;
        // A large result's body (from a memfd nobody writes again), which its `Bytes`
        // values share instead of copying.
        let mapped = match frame.kind {
            KIND_RESULT_BIG => match spilled(frame.payload, &mut frame_fds) {
                Ok(m) => Some(Arc::new(m)),
                Err(e) => return self.protocol_error(wi, &format!("a large result that cannot be read: {e}")),
            },
            _ => None,
        };
        let payload: &[u8] = mapped.as_ref().map_or(frame.payload, |m| m.bytes());
        let Some((head, body)) = ResultHead::decode(payload) else {
            return self.protocol_error(wi, "a result too short for its header");
        };
        let held = match answered(&mut w.held, &head) {
            Ok(held) => held,
            Err(what) => return self.protocol_error(wi, what),
        };
        // The worker read this task's body before answering: its memfd is free, unless
        // the worker still shares it.
        if head.flags.kept_body {
            link.writer.forget_spilled(head.id);
        }
        link.writer.release_spilled(head.id);
        w.answered += head.count as u64;
        // Robbed, it held only tasks it had claimed: the last of them has answered.
        w.robbed &= !w.held.is_empty();
        w.since = now;
        let (taken, tally) = deliver(&held.job, body, mapped.as_ref(), frame_fds);
        self.on_result(&held.job, &head, taken, tally);
        true
    }

    /// A result was delivered (`taken` of its items were well formed).
    fn on_result(&mut self, job: &Job, head: &ResultHead, taken: u32, tally: Tally) {
        tally.add_to(&mut self.stats);
        self.stats_dirty = true;
        if taken != head.count {
            let rest = job.part(taken, head.count - taken);
            self.fail_job(&rest, |task| TaskError::Codec { task, message: "a cut result".into() });
        }
        self.measure(head.elapsed, head.count);
    }

    /// A frame other than a result; returns whether to go on reading.
    fn on_message(&mut self, wi: usize, message: Message) -> bool {
        let w = &mut self.workers[wi];
        match message {
            Message::Ready => {
                w.ready = true;
                self.start_failures = 0;
            }
            Message::InitFailed(why) => {
                w.init_error = Some(why);
                w.leaving = Some(Leaving::InitFailed);
            }
            Message::Retire(Some(r)) => self.on_retire(wi, r),
            Message::Retire(None) => return self.protocol_error(wi, "an unreadable retirement"),
            // A task it still holds was not taken back: its claim word was overwritten
            // (by a task's stray write), and it would wait for that task for ever.
            Message::Skipped(Some(id)) if w.held.iter().any(|h| h.id == id) => {
                return self
                    .protocol_error(wi, "it skipped a task that was not taken back (its claim word was overwritten)");
            }
            Message::Skipped(Some(_)) => w.skips_due = w.skips_due.saturating_sub(1),
            Message::Skipped(None) => return self.protocol_error(wi, "an unreadable skip notice"),
            Message::Unexpected(k) => return self.protocol_error(wi, &format!("unexpected frame kind {k:#04x}")),
        }
        true
    }

    fn on_retire(&mut self, wi: usize, r: Retire) {
        self.workers[wi].leaving = Some(Leaving::Retired(r));
        match r {
            Retire::MaxTasks => self.stats.recycled_max_tasks += 1,
            Retire::Memory { .. } => self.stats.recycled_memory += 1,
        }
        self.stats_dirty = true;
        // Its replacement can start now, not when it has exited.
        if !self.terminating {
            self.replace_workers();
        }
    }

    fn measure(&mut self, elapsed: u64, count: u32) {
        let per_item = elapsed / count.max(1) as u64;
        let avg = |old: u64, new: u64| if old == 0 { new.max(1) } else { (old * 7 + new) / 8 };
        self.task_ns = avg(self.task_ns, elapsed);
        self.item_ns = avg(self.item_ns, per_item);
    }

    /// A worker broke the protocol: it is killed (returns `false`, for readers to stop).
    fn protocol_error(&mut self, wi: usize, what: &str) -> bool {
        let w = &mut self.workers[wi];
        log_event(&format!("multiproc pool: {} (pid {}) sent {what}; killing it", w.name, w.process.pid()));
        w.leaving = Some(Leaving::Killed(Kill::Protocol));
        w.ended();
        let _ = w.process.signal(libc::SIGKILL);
        false
    }

    /// A worker's process ended: account for every item it held.
    fn reap(&mut self, wi: usize) {
        if self.workers[wi].link.is_none() {
            return;
        }
        self.read_results(wi, true);
        let w = &self.workers[wi];
        let counters = || {
            let started = w.counters.get(SLOT_STARTED).load(Ordering::Acquire);
            (started, w.counters.get(SLOT_FINISHED).load(Ordering::Acquire))
        };
        let sent = w.answered + w.held.iter().map(|h| h.job.count as u64).sum::<u64>();
        let Some(Death { code, mut blame, attempt }) = death(&w.process, counters, (w.answered, sent)) else { return };
        if w.leaving == Some(Leaving::Killed(Kill::ConnectionLost)) {
            blame = blame.after_connection_lost(w.answered);
        }
        let asked = expected_exit(w.leaving, code) && !matches!(w.leaving, Some(Leaving::Killed(_)));
        if asked || !w.ready || w.leaving == Some(Leaving::InitFailed) {
            // Stopped or retired as asked, or it never got to run anything (its start
            // failed, which is counted as such): what it held goes back uncharged.
            blame = Blame::Nobody;
        }
        let words = last_words::read(&w.counters);
        let mut w = self.workers.swap_remove(wi);
        self.count_death(&mut w, code, blame.charged(), &attempt, words.as_ref());
        self.stats_dirty = true;
        // Items not finished go back in order; the one charged with the death gets the
        // blame, and items the death cannot tell apart run again, each alone.
        let held = std::mem::take(&mut w.held).into_iter().map(|h| h.job);
        let mut again: Vec<Job> = Vec::new();
        for (job, fate) in cut_held(held, w.answered, blame) {
            match fate {
                Fate::Requeue | Fate::Isolate => again.push(job),
                Fate::Charge => again.extend(self.blame(job, &w, attempt.clone(), code, words.as_ref())),
            }
        }
        for job in again.into_iter().rev() {
            self.pending.push_front(job);
        }
        drop(w);
    }

    /// Counts a worker's end in the statistics (a start that failed, or an unexpected
    /// death, which is logged with the task it was running).
    fn count_death(
        &mut self,
        w: &mut Worker,
        code: i32,
        culprit: Option<u64>,
        attempt: &Attempt,
        words: Option<&LastWords>,
    ) {
        let pid = w.process.pid();
        if !w.ready || w.leaving == Some(Leaving::InitFailed) {
            let why = w.init_error.take().unwrap_or_else(|| match words {
                Some(LastWords::Panic(p)) => format!("panicked at {}: {}", p.location, p.message),
                Some(LastWords::Cause(c)) => format!("died with {}: {c}", describe(code)),
                None => format!("died with {}", describe(code)),
            });
            self.start_failed(format!("{} (pid {pid}) failed before its first task: {why}", w.name));
        } else if !expected_exit(w.leaving, code) {
            self.stats.workers_died += 1;
            match attempt.signal {
                Some(s) => *self.stats.died_by_signal.entry(s).or_default() += 1,
                None => *self.stats.died_by_exit_code.entry(code).or_default() += 1,
            }
            let running = culprit.and_then(|c| item_at(&w.held, w.answered, c)).unwrap_or("no task");
            log_event(&format!(
                "multiproc pool: {} (pid {pid}) died with {} while running `{running}`",
                w.name,
                describe(code)
            ));
        }
    }

    /// Fails (or re-queues, for a retry) the item charged with its worker's end: the one
    /// it was running, or whose result was lost with it.
    fn blame(
        &mut self,
        mut one: Job,
        w: &Worker,
        attempt: Attempt,
        code: i32,
        words: Option<&LastWords>,
    ) -> Option<Job> {
        let task = one.sub.task;
        let pid = w.process.pid();
        if let (Some(LastWords::Panic(p)), None) = (words, w.leaving)
            && code == -libc::SIGABRT
        {
            // A panic the worker did not survive (`panic = "abort"`): the task's own error.
            self.stats.tasks_panicked += 1;
            let p = p.clone();
            self.fail_job(&one, |task| TaskError::Panicked {
                task,
                message: p.message.clone(),
                location: p.location.clone(),
                backtrace: p.backtrace.clone(),
            });
            return None;
        }
        match w.leaving {
            Some(Leaving::Killed(Kill::Timeout(timeout))) => {
                self.stats.tasks_timed_out += 1;
                if self.cfg.retry_timeouts && (one.attempts.len() as u32) < one.sub.retries {
                    one.attempts.push(attempt);
                    self.stats.tasks_retried += 1;
                    return Some(one);
                }
                self.fail_job(&one, |_| TaskError::Timeout { task, pid, timeout });
                None
            }
            Some(Leaving::Killed(Kill::Cancel)) => {
                self.fail_job(&one, |task| TaskError::Cancelled { task });
                None
            }
            _ => {
                one.attempts.push(attempt);
                if one.attempts.len() as u32 <= one.sub.retries {
                    self.stats.tasks_retried += 1;
                    return Some(one);
                }
                let hint = match (words, w.leaving) {
                    (Some(LastWords::Cause(c)), _) => Some(c.clone()),
                    // Killed before it could say why (it had not yet tried to send): the
                    // driver saw the socket end, which is the cause all the same.
                    (_, Some(Leaving::Killed(Kill::ConnectionLost))) => Some(CONNECTION_LOST_HINT.into()),
                    _ => self.hint(code),
                };
                let attempts = one.attempts.to_vec();
                self.stats.tasks_worker_died += 1;
                self.fail_job(&one, |_| TaskError::died(task, attempts.clone(), hint.clone()));
                None
            }
        }
    }

    fn hint(&self, code: i32) -> Option<String> {
        match code {
            c if c == -libc::SIGABRT || c == -libc::SIGSEGV => self.cfg.address_space.map(|limit| {
                format!("the worker may have hit its address-space limit of {limit} bytes (max_address_space)")
            }),
            0 => Some("the task called exit (e.g. std::process::exit) in the worker".into()),
            c if c == -libc::SIGXCPU || c == -libc::SIGXFSZ => self.cfg.spec.isolation.limits.hint_for_signal(-c),
            c if c == -libc::SIGSYS => Some("a system call the worker's sandbox denies".into()),
            _ => None,
        }
    }

    /// Delivers the same failure to every item of a job.
    fn fail_job(&mut self, job: &Job, err: impl Fn(&'static str) -> TaskError) {
        let stats = &mut self.stats;
        job.fail_each(err, |e| match e {
            TaskError::Cancelled { .. } => stats.tasks_cancelled += 1,
            TaskError::Terminated { .. } => stats.tasks_terminated += 1,
            TaskError::Codec { .. } => stats.tasks_codec_failed += 1,
            _ => {}
        });
        self.stats_dirty = true;
    }

    /// Kills and reaps every worker and fails whatever is pending.
    fn terminate_all(&mut self) {
        self.unpark_all();
        for w in &self.workers {
            let _ = w.process.signal(libc::SIGKILL);
        }
        // A worker whose link a caller holds stays until the caller gives it back (its
        // read ends as the worker dies), with the task it ran.
        let (home, lent): (Vec<Worker>, Vec<Worker>) =
            std::mem::take(&mut self.workers).into_iter().partition(|w| w.link.is_some());
        self.workers = lent;
        for mut w in home {
            let _ = w.process.wait();
            for held in std::mem::take(&mut w.held) {
                self.fail_job(&held.job, |task| TaskError::Terminated { task });
            }
        }
        while let Some(job) = self.pending.pop_front() {
            self.fail_job(&job, |task| TaskError::Terminated { task });
        }
    }

    fn publish_stats(&mut self) {
        let tally = &self.state.lanes.tally;
        for (from, to) in [
            (&tally.done, &mut self.stats.tasks_done),
            (&tally.panicked, &mut self.stats.tasks_panicked),
            (&tally.codec_failed, &mut self.stats.tasks_codec_failed),
        ] {
            let n = from.swap(0, Ordering::Relaxed);
            if n > 0 {
                *to += n;
                self.stats_dirty = true;
            }
        }
        if self.stats_dirty {
            self.stats.workers_alive = self.workers.len();
            self.stats.worker_pids.clear();
            self.stats.worker_pids.extend(self.workers.iter().map(|w| w.process.pid()));
            if let Some(server) = &self.cfg.fork_server {
                self.stats.fork_server_pid = server.template_pid();
                self.stats.fork_servers_started = server.templates_started();
            }
        }
        self.state.stats.publish(&self.stats, std::mem::take(&mut self.stats_dirty));
    }

    /// The driver is ending: refuse new work, fail anything that slipped in.
    fn finish(mut self) {
        let late: Vec<Job> = {
            let mut inbox = self.state.inbox.lock().unwrap_or_else(|e| e.into_inner());
            inbox.finished = true;
            inbox.jobs.drain(..).collect()
        };
        for job in late.iter().chain(self.pending.drain(..).collect::<Vec<_>>().iter()) {
            self.fail_job(job, |task| TaskError::Closed { task });
        }
        self.stats_dirty = true;
        self.publish_stats();
        // Every start has ended (the loop waits for them): their threads are finishing.
        self.state.join_start_threads();
        self.state.stats.finish();
    }
}

/// What poll said about one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Event {
    wi: usize,
    /// Its socket has something to read (or hung up).
    readable: bool,
    /// Its socket takes more of what is queued.
    writable: bool,
    /// Its pidfd fired: the process ended.
    exited: bool,
}

/// The events of poll's answers for the workers' descriptors, two per worker (socket,
/// pidfd), in the order they were polled.
fn worker_events(revents: impl Iterator<Item = PollFlags>) -> Vec<Event> {
    let mut events = Vec::new();
    let mut revents = revents;
    let mut wi = 0;
    while let (Some(sock), Some(pid)) = (revents.next(), revents.next()) {
        let readable = sock.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR);
        let writable = sock.contains(PollFlags::OUT);
        let exited = !pid.is_empty();
        if readable || writable || exited {
            events.push(Event { wi, readable, writable, exited });
        }
        wi += 1;
    }
    events
}

/// A frame from a worker other than a result, decoded.
#[derive(Debug, PartialEq)]
enum Message {
    Ready,
    /// Its initializer failed: why.
    InitFailed(String),
    /// It retires (`None`: unreadable).
    Retire(Option<Retire>),
    /// It skipped this task as taken back (`None`: unreadable).
    Skipped(Option<u64>),
    Unexpected(u8),
}

impl Message {
    fn decode(kind: u8, payload: &[u8]) -> Message {
        match kind {
            KIND_READY => Message::Ready,
            KIND_INIT_FAILED => Message::InitFailed(codec::decode::<String>(payload).unwrap_or_else(|e| e.to_string())),
            KIND_RETIRE => Message::Retire(codec::decode::<Retire>(payload).ok()),
            KIND_SKIPPED => Message::Skipped(codec::decode::<u64>(payload).ok()),
            k => Message::Unexpected(k),
        }
    }
}

/// The held task a result answers: the oldest, which the result must name, since a
/// worker answers its tasks in order.
fn answered(held: &mut VecDeque<Held>, head: &ResultHead) -> Result<Held, &'static str> {
    let Some(front) = held.front() else { return Err("a result for no task") };
    if front.id != head.id || front.job.count != head.count {
        return Err("a result out of order");
    }
    Ok(held.pop_front().expect("checked above"))
}

/// Hands a result's items to the job's sink (values share `mapped`, descriptors go to
/// the values that take them); returns how many items were well formed and what they
/// turned out to be.
fn deliver(job: &Job, body: &[u8], mapped: Option<&Arc<Mapped>>, frame_fds: Vec<OwnedFd>) -> (u32, Tally) {
    let task = job.sub.task;
    let first = job.sub.base + job.first as usize;
    let mut tally = Tally::default();
    let n = crate::bytes::sharing(mapped, || {
        fds::with_incoming(frame_fds, || job.sub.sink.deliver_chunk(task, first, body, job.count, &mut tally))
    });
    (n, tally)
}

/// The task of item `pos` of a worker's item stream, among the held tasks that start
/// at position `answered`.
fn item_at(held: &VecDeque<Held>, answered: u64, pos: u64) -> Option<&'static str> {
    let mut at = answered;
    for h in held {
        if pos < at + h.job.count as u64 {
            return Some(h.job.sub.task);
        }
        at += h.job.count as u64;
    }
    None
}

/// What reaping asks of a worker's process: a trait, so that the reaping decision is
/// tested with a mock (as tokio's `process/unix/orphan.rs` does with its `Wait`).
trait Wait {
    fn pid(&self) -> u32;
    /// Its exit code once it has ended (negative: the signal), `None` while it runs.
    fn try_wait(&self) -> std::io::Result<Option<i32>>;
}

impl Wait for ChildProcess {
    fn pid(&self) -> u32 {
        ChildProcess::pid(self)
    }

    fn try_wait(&self) -> std::io::Result<Option<i32>> {
        ChildProcess::try_wait(self)
    }
}

/// How a worker ended, as reaping accounts for it.
#[derive(Debug)]
struct Death {
    /// Its exit code (negative: the signal; -1 if it could not be waited for).
    code: i32,
    /// Which of its items it is charged to.
    blame: Blame,
    attempt: Attempt,
}

/// Whether `process` has ended, and how; `None` while it runs. `counters` reads its
/// shared counters (items started, finished), once it has ended, so they are final;
/// `answered` is how many of its items' results the driver holds, `sent` how many items
/// it was sent (those answered and those it holds).
fn death(process: &impl Wait, counters: impl FnOnce() -> (u64, u64), (answered, sent): (u64, u64)) -> Option<Death> {
    let code = match process.try_wait() {
        Ok(Some(code)) => code,
        Ok(None) => return None,
        Err(_) => -1,
    };
    let (started, finished) = counters();
    let blame = Blame::of(started, finished, answered, sent);
    Some(Death { code, blame, attempt: Attempt::from_exitcode(process.pid(), code) })
}

/// Which items of a dead worker's stream its death is charged to (positions count the
/// items the worker was sent). The ledger's rule: an item is done only when its result is
/// in the driver, and every death is charged to an item it could have been running, so a
/// bounded number of deaths settles any item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blame {
    /// Item `n` was running (started, not finished).
    Running(u64),
    /// Item `n` finished but its result never arrived, and no other result was missing:
    /// the worker died right after it (the task may have closed its socket).
    Lost(u64),
    /// Items `a..b` finished and their results never arrived: any of them may have caused
    /// the death. None is charged; each runs again alone, so a second death names one.
    Suspects(u64, u64),
    /// Every finished item was answered: the death came between tasks, as the worker
    /// took item `n` (if it held one): a suspect like those above (it may be what killed
    /// it: an argument it could not take), charged if it already ran alone.
    Next(u64),
    /// The worker ended as the driver asked (stopped, retired): nothing is charged.
    Nobody,
}

impl Blame {
    /// The blame the counters a worker left (items started, finished) point to, given
    /// that the driver holds the results of its first `answered` items and sent it
    /// `sent`. The counters are in the worker's memory, which a task that scribbles over
    /// memory may have overwritten before it crashed: counters no worker telling the
    /// truth leaves (an item finished before one answered, more than one running, more
    /// started than sent) charge nobody; every item held is a suspect, run again alone,
    /// so that the item that crashes alone is charged (the ledger's rule holds).
    fn of(started: u64, finished: u64, answered: u64, sent: u64) -> Blame {
        let truthful =
            answered <= finished && finished <= started && started <= finished.saturating_add(1) && started <= sent;
        if !truthful {
            Blame::Suspects(answered, sent)
        } else if started > finished {
            Blame::Running(finished)
        } else if finished == answered + 1 {
            Blame::Lost(answered)
        } else if finished > answered {
            Blame::Suspects(answered, finished)
        } else {
            Blame::Next(answered)
        }
    }

    /// The blame once the driver killed the worker because its socket was closed while it
    /// ran an item: if the results of items before that one were lost too, any of them
    /// may have closed the socket, so they and the running one are all suspects;
    /// otherwise the running item closed it itself.
    fn after_connection_lost(self, answered: u64) -> Blame {
        match self {
            Blame::Running(n) if n > answered => Blame::Suspects(answered, n + 1),
            other => other,
        }
    }

    /// The one item charged, if there is one.
    fn charged(self) -> Option<u64> {
        match self {
            Blame::Running(n) | Blame::Lost(n) => Some(n),
            Blame::Suspects(..) | Blame::Next(_) | Blame::Nobody => None,
        }
    }
}

/// What becomes of a run of a dead worker's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Back to the queue, uncharged.
    Requeue,
    /// Charged with the death: an attempt, then a retry (alone) or its error.
    Charge,
    /// Back to the queue, to run alone.
    Isolate,
}

/// The fates of the `count` items at positions `pos..` (one held task), as runs of
/// (offset in the task, length, fate), in order.
fn fates(pos: u64, count: u32, blame: Blame) -> Vec<(u32, u32, Fate)> {
    let end = pos + count as u64;
    let (lo, hi, fate) = match blame {
        Blame::Running(n) | Blame::Lost(n) => (n, n + 1, Fate::Charge),
        Blame::Suspects(a, b) => (a, b, Fate::Isolate),
        Blame::Next(n) => (n, n + 1, Fate::Isolate),
        Blame::Nobody => (end, end, Fate::Requeue),
    };
    let (lo, hi) = (lo.clamp(pos, end), hi.clamp(pos, end));
    let runs = [(pos, lo, Fate::Requeue), (lo, hi, fate), (hi, end, Fate::Requeue)];
    runs.into_iter().filter(|(a, b, _)| b > a).map(|(a, b, f)| ((a - pos) as u32, (b - a) as u32, f)).collect()
}

/// Whether all the driver awaits from a worker is its end: told to stop, holding nothing,
/// with its STOP sent. Its socket is then not polled: it has nothing to say, its end of
/// file comes as it exits, which its pidfd says, and waking on both costs a closing pool
/// one more wake-up per worker on the path of `join` (whatever it did send is read when
/// it is reaped).
fn only_its_end_awaited(leaving: Option<Leaving>, held: usize, unsent: usize) -> bool {
    leaving == Some(Leaving::Stopped) && held == 0 && unsent == 0
}

/// Whether a worker that ended with `code` was meant to (asked to stop or retiring,
/// and exiting cleanly; or killed by the driver).
fn expected_exit(leaving: Option<Leaving>, code: i32) -> bool {
    match leaving {
        Some(Leaving::Stopped) => code == 0,
        Some(Leaving::Retired(_)) => code == 0,
        Some(Leaving::Killed(_)) => true,
        Some(Leaving::InitFailed) | None => false,
    }
}

/// Cuts a dead worker's held jobs (in order, the first at position `answered` of its
/// item stream) by the fate of their items, in order. A charged item keeps its job's
/// attempts and will run alone if retried; each suspect becomes a job of one item that
/// runs alone, and a suspect that already ran alone is charged.
fn cut_held(held: impl IntoIterator<Item = Job>, answered: u64, blame: Blame) -> Vec<(Job, Fate)> {
    let mut cut = Vec::new();
    let mut pos = answered;
    for job in held {
        for (offset, count, fate) in fates(pos, job.count, blame) {
            let fate = if fate == Fate::Isolate && job.isolate { Fate::Charge } else { fate };
            let singles = if fate == Fate::Requeue { 0..0 } else { offset..offset + count };
            if fate == Fate::Requeue {
                cut.push((job.part(offset, count), fate));
            }
            for k in singles {
                let mut one = job.part(k, 1);
                one.attempts = job.attempts.clone();
                one.isolate = true;
                cut.push((one, fate));
            }
        }
        pos += job.count as u64;
    }
    cut
}

/// The earlier of two deadlines, either of which may be none.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn describe(code: i32) -> String {
    crate::error::describe_exit(code)
}

/// Worker deaths and other events nobody asked about: through `tracing` when enabled.
fn log_event(message: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!("{message}");
    #[cfg(not(feature = "tracing"))]
    let _ = message;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::chunk::Chunking;
    use crate::pool::item::{Delivered, Outcome};
    use crate::pool::submit::{Sink, Submission};

    struct Nowhere;

    impl Sink for Nowhere {
        fn deliver(&self, _: usize, _: Outcome<'_>) -> Delivered {
            Delivered::Ignored
        }
        fn cancelled(&self) -> bool {
            false
        }
    }

    fn job(task: &'static str, first: u32, count: u32) -> Job {
        let sub = Submission {
            task,
            trampoline: 0,
            function: 0,
            bytes: Vec::new().into(),
            index: None,
            base: 0,
            chunking: Chunking::Fixed(1),
            timeout: None,
            retries: 0,
            sink: Nowhere,
        };
        Job::new(Arc::new(sub), first, count)
    }

    fn fated(cut: &[(Job, Fate)]) -> Vec<(u32, u32, Fate)> {
        cut.iter().map(|(j, f)| (j.first, j.count, *f)).collect()
    }

    #[test]
    fn a_death_charges_the_running_item_and_requeues_the_rest_in_order() {
        use Fate::*;
        // Held: items 0..3 and 3..7 of the stream, 10 answered before them.
        let attempt = Attempt::from_exitcode(1, -9);
        let mut second = job("t", 3, 4);
        second.attempts.push(attempt);
        let cut = cut_held([job("t", 0, 3), second], 10, Blame::Running(14));
        assert_eq!(fated(&cut), [(0, 3, Requeue), (3, 1, Requeue), (4, 1, Charge), (5, 2, Requeue)]);
        assert_eq!(cut[2].0.attempts.len(), 1, "the charged item keeps its attempts");
        assert!(cut[2].0.isolate, "and runs alone if retried");
        assert!(cut[3].0.attempts.is_empty() && !cut[3].0.isolate);
    }

    #[test]
    fn a_death_between_tasks_charges_nothing() {
        use Fate::*;
        let cut = cut_held([job("t", 0, 2), job("t", 2, 2)], 0, Blame::Nobody);
        assert_eq!(fated(&cut), [(0, 2, Requeue), (2, 2, Requeue)]);
        let cut = cut_held([job("t", 0, 2)], 0, Blame::Running(0));
        assert_eq!(fated(&cut), [(0, 1, Charge), (1, 1, Requeue)]);
        let past = cut_held([job("t", 0, 2)], 5, Blame::Running(3));
        assert_eq!(fated(&past), [(0, 2, Requeue)]);
    }

    #[test]
    fn lost_results_charge_their_item_or_isolate_the_suspects() {
        use Fate::*;
        assert_eq!(Blame::of(5, 4, 2, 8), Blame::Running(4));
        // One result lost: a task that closes its worker's socket and returns is charged,
        // so it cannot be re-run forever.
        assert_eq!(Blame::of(4, 4, 3, 8), Blame::Lost(3));
        assert_eq!(Blame::of(4, 4, 2, 8), Blame::Suspects(2, 4));
        assert_eq!(Blame::of(4, 4, 4, 8), Blame::Next(4));
        assert_eq!(Blame::Suspects(2, 4).charged(), None);
        // Suspects 8..12 span the tail of a task at 5..10 and the head of one at 10..15.
        let cut = cut_held([job("t", 0, 5), job("t", 5, 5)], 5, Blame::Suspects(8, 12));
        assert_eq!(
            fated(&cut),
            [(0, 3, Requeue), (3, 1, Isolate), (4, 1, Isolate), (5, 1, Isolate), (6, 1, Isolate), (7, 3, Requeue)]
        );
        assert!(cut.iter().all(|(j, f)| j.isolate == (*f != Requeue)));
    }

    #[test]
    fn the_next_item_of_a_worker_that_died_between_tasks_is_a_suspect_then_charged() {
        use Fate::*;
        // Died as it took item 10 (the first of a task at 10..13): it runs again alone.
        let cut = cut_held([job("t", 0, 3)], 10, Blame::Next(10));
        assert_eq!(fated(&cut), [(0, 1, Isolate), (1, 2, Requeue)]);
        assert!(cut[0].0.isolate && !cut[1].0.isolate);
        // Running alone, it killed a worker again before starting: now it is charged.
        let mut alone = job("t", 0, 1);
        alone.isolate = true;
        assert_eq!(fated(&cut_held([alone], 11, Blame::Next(11))), [(0, 1, Charge)]);
        // A worker that held nothing has nothing to charge.
        assert!(cut_held(Vec::<Job>::new(), 4, Blame::Next(4)).is_empty());
    }

    #[test]
    fn a_closed_socket_with_lost_results_makes_every_item_since_a_suspect() {
        // Items 2 and 3 finished, their results lost, item 4 running when the driver
        // killed the worker for its closed socket: any of them may have closed it.
        assert_eq!(Blame::Running(4).after_connection_lost(2), Blame::Suspects(2, 5));
        // Nothing lost before it: the running item closed its socket itself.
        assert_eq!(Blame::Running(4).after_connection_lost(4), Blame::Running(4));
        assert_eq!(Blame::Lost(3).after_connection_lost(3), Blame::Lost(3));
    }

    #[test]
    fn fates_cut_a_task_around_the_charged_item() {
        use Fate::*;
        assert_eq!(fates(10, 5, Blame::Running(12)), [(0, 2, Requeue), (2, 1, Charge), (3, 2, Requeue)]);
        assert_eq!(fates(10, 5, Blame::Lost(14)), [(0, 4, Requeue), (4, 1, Charge)]);
        assert_eq!(fates(10, 5, Blame::Running(20)), [(0, 5, Requeue)]);
        assert_eq!(fates(10, 5, Blame::Nobody), [(0, 5, Requeue)]);
    }

    #[test]
    fn the_counters_name_the_running_item_and_its_task() {
        let held: VecDeque<Held> = [Held { id: 1, job: job("a", 0, 2) }, Held { id: 2, job: job("b", 2, 3) }].into();
        assert_eq!(item_at(&held, 10, 11), Some("a"));
        assert_eq!(item_at(&held, 10, 12), Some("b"));
        assert_eq!(item_at(&held, 10, 15), None);
    }

    /// A process that has not ended (`None`), ended with a code, or cannot be waited for.
    struct Mock(Option<std::io::Result<Option<i32>>>);

    impl Wait for Mock {
        fn pid(&self) -> u32 {
            42
        }
        fn try_wait(&self) -> std::io::Result<Option<i32>> {
            match &self.0 {
                Some(Ok(code)) => Ok(*code),
                Some(Err(_)) => Err(std::io::Error::other("gone")),
                None => Ok(None),
            }
        }
    }

    #[test]
    fn counters_no_truthful_worker_leaves_make_every_held_item_a_suspect() {
        // Sent items 2..8 (2 answered): a worker telling the truth runs one at a time,
        // in order, and finishes an item before its result can be answered.
        for (started, finished) in [(9, 8), (7, 3), (1, 0), (u64::MAX, 0), (u64::MAX, u64::MAX), (3, 4), (0, 0)] {
            assert_eq!(Blame::of(started, finished, 2, 8), Blame::Suspects(2, 8), "({started}, {finished})");
        }
        // Seen: a task that wrote `started` 5 past `finished`, one past the item it ran;
        // each death charged the innocent item after it, and the culprit, left alone in
        // its task, was re-run for ever. Now it runs alone, and dies alone: charged.
        let cut = cut_held([job("t", 0, 1)], 0, Blame::of(6, 1, 0, 1));
        assert_eq!(fated(&cut), [(0, 1, Fate::Isolate)]);
        let mut alone = job("t", 0, 1);
        alone.isolate = true;
        assert_eq!(fated(&cut_held([alone], 0, Blame::of(6, 1, 0, 1))), [(0, 1, Fate::Charge)]);
    }

    #[test]
    fn a_process_is_reaped_once_it_has_ended_with_its_final_counters() {
        let running = Mock(Some(Ok(None)));
        assert!(death(&running, || panic!("the counters of a running worker are not final"), (0, 0)).is_none());
        let killed = death(&Mock(Some(Ok(Some(-libc::SIGKILL)))), || (5, 4), (2, 8)).unwrap();
        assert_eq!((killed.code, killed.blame), (-libc::SIGKILL, Blame::Running(4)));
        assert_eq!((killed.attempt.pid, killed.attempt.signal), (42, Some(libc::SIGKILL)));
        let between = death(&Mock(Some(Ok(Some(0)))), || (4, 4), (4, 4)).unwrap();
        assert_eq!((between.code, between.blame, between.attempt.exit_code), (0, Blame::Next(4), Some(0)));
        let lost = death(&Mock(Some(Err(std::io::Error::other("gone")))), || (1, 0), (0, 1)).unwrap();
        assert_eq!((lost.code, lost.blame), (-1, Blame::Running(0)));
    }

    #[test]
    fn only_a_stopped_worker_holding_nothing_with_its_stop_sent_is_awaited_by_its_pidfd_alone() {
        assert!(only_its_end_awaited(Some(Leaving::Stopped), 0, 0));
        assert!(!only_its_end_awaited(Some(Leaving::Stopped), 0, 8), "its STOP is still to be sent");
        assert!(!only_its_end_awaited(Some(Leaving::Stopped), 1, 0), "it holds a task");
        assert!(!only_its_end_awaited(None, 0, 0));
        assert!(!only_its_end_awaited(Some(Leaving::Retired(Retire::MaxTasks)), 0, 0));
        assert!(!only_its_end_awaited(Some(Leaving::Killed(Kill::Cancel)), 0, 0));
    }

    #[test]
    fn only_a_clean_exit_after_stop_or_retire_and_a_kill_are_expected() {
        assert!(expected_exit(Some(Leaving::Stopped), 0));
        assert!(!expected_exit(Some(Leaving::Stopped), 1));
        assert!(expected_exit(Some(Leaving::Retired(Retire::MaxTasks)), 0));
        assert!(expected_exit(Some(Leaving::Killed(Kill::Cancel)), -9));
        assert!(!expected_exit(None, 0));
        assert!(!expected_exit(Some(Leaving::InitFailed), 0));
    }

    #[test]
    fn a_result_must_answer_the_oldest_held_task() {
        let mut held: VecDeque<Held> = [Held { id: 7, job: job("a", 0, 2) }].into();
        let head = |id, count| ResultHead { id, elapsed: 0, count, flags: Default::default() };
        assert_eq!(answered(&mut held, &head(8, 2)).err(), Some("a result out of order"));
        assert_eq!(answered(&mut held, &head(7, 1)).err(), Some("a result out of order"));
        assert_eq!(answered(&mut held, &head(7, 2)).map(|h| h.id), Ok(7));
        assert_eq!(answered(&mut held, &head(7, 2)).err(), Some("a result for no task"));
    }

    #[test]
    fn poll_answers_become_one_event_per_worker_that_needs_something() {
        let none = PollFlags::empty();
        let events = worker_events([none, none, PollFlags::HUP, none, PollFlags::OUT, PollFlags::IN].into_iter());
        assert_eq!(
            events,
            [
                Event { wi: 1, readable: true, writable: false, exited: false },
                Event { wi: 2, readable: false, writable: true, exited: true },
            ]
        );
    }

    #[test]
    fn frames_other_than_results_decode_to_messages() {
        assert_eq!(Message::decode(KIND_READY, &[]), Message::Ready);
        let why = codec::encode(&"boom".to_string()).unwrap();
        assert_eq!(Message::decode(KIND_INIT_FAILED, &why), Message::InitFailed("boom".into()));
        let retire = codec::encode(&Retire::Memory { rss: 9 }).unwrap();
        assert_eq!(Message::decode(KIND_RETIRE, &retire), Message::Retire(Some(Retire::Memory { rss: 9 })));
        assert_eq!(Message::decode(KIND_RETIRE, &[0xff]), Message::Retire(None));
        assert_eq!(Message::decode(0x42, &[]), Message::Unexpected(0x42));
    }
}
