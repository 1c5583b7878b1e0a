//! The driver: one thread per pool that owns every worker's socket and process.
//!
//! It polls the worker sockets (results in, tasks out, never blocking on either), the
//! workers' pidfds (a death is seen at once), a wake-up descriptor (new submissions,
//! cancellations, close, terminate) and the nearest task deadline. Each worker holds a
//! small window of tasks, sized from the measured task time: one at a time for slow
//! tasks (as Python's pool), up to 64 for tiny ones so the worker never waits for the
//! parent. Workers run their tasks in order, so on a death the shared counters name the
//! one item that was running; everything else the worker held is queued again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::handle::{Held, Kill, Leaving, Worker, WorkerConfig};
use super::lane::{GaveUp, Link, Parked};
use super::protocol::*;
use super::starts::Started;
use super::state::State;
use crate::pool::chunk;
use crate::pool::error::{Attempt, TaskError};
use crate::pool::stats::PoolStats;
use crate::pool::submit::{Job, Tally};
use crate::sys::event::{PollFd, PollFlags, poll};
use crate::wire::frame::spilled;
use crate::wire::{FrameError, codec, fds};

/// Consecutive worker start failures after which the pool stops restarting workers.
const MAX_START_FAILURES: u32 = 3;
/// How long a worker whose socket ended may take to exit before it is killed (an exit
/// takes well under a millisecond; one that closed its socket and kept running never does).
const EXIT_GRACE: Duration = Duration::from_secs(2);

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
        loop {
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
                self.stop_when_drained();
            }
            self.flush_all();
            let deadline = self.enforce_deadlines();
            self.publish_stats();
            if (self.closed || self.terminating) && self.workers.is_empty() && self.spawning == 0 && self.idle() {
                break;
            }
            self.park_idle();
            self.wait(deadline);
        }
        self.finish();
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
            let quiet = link.writer.pending() == 0 && link.reader.buffered() == 0;
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
                GaveUp::Broken { protocol: true } => self.protocol_error(wi, "a frame that is not its result"),
                // It ended (its pidfd says how); a worker that merely closed its socket goes too.
                GaveUp::Broken { protocol: false } => {
                    w.ended();
                    let _ = w.process.signal(libc::SIGKILL);
                }
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
        chunk::one_fd_item(k, job.first, job.sub.fds.iter().map(|(i, _)| *i))
    }

    fn dispatch(&mut self) {
        // A deep window only pays when there is plenty of work: a few items are spread
        // one per worker (counting those still starting), as Python's pool would.
        let workers = self.workers.iter().filter(|w| w.leaving.is_none()).count() + self.spawning;
        let pending = &self.pending;
        let items = || pending.iter().map(|j| j.count as usize).sum();
        let window = chunk::spread_window(chunk::window(self.task_ns), pending.len(), items, workers);
        let now = Instant::now();
        loop {
            let mut progressed = false;
            for wi in 0..self.workers.len() {
                let Some(mut job) = self.pending.pop_front() else { return };
                if job.sub.sink.cancelled() {
                    self.fail_job(&job, |task| TaskError::Cancelled { task });
                    progressed = true;
                    continue;
                }
                let w = &self.workers[wi];
                let quota_left = self.cfg.max_tasks.is_none_or(|m| w.tasks_sent < m);
                // Large bodies in flight are bounded by bytes too, so their memfds are reused.
                let spill_full = !w.held.is_empty()
                    && w.link.as_ref().is_some_and(|l| l.writer.spilled_in_flight() >= SPILLED_IN_FLIGHT);
                if w.leaving.is_some()
                    || w.eof.is_some()
                    || w.link.is_none()
                    || w.held.len() >= window
                    || !quota_left
                    || spill_full
                {
                    self.pending.push_front(job);
                    continue;
                }
                let k = self.chunk_for(&job);
                if k < job.count {
                    let rest =
                        Job { sub: job.sub.clone(), first: job.first + k, count: job.count - k, attempts: Vec::new() };
                    self.pending.push_front(rest);
                    job.count = k;
                }
                let id = self.next_id;
                self.next_id += 1;
                let sub = job.sub.clone();
                let item_fds: &[std::os::fd::OwnedFd] = sub
                    .fds
                    .iter()
                    .find(|(i, _)| *i >= job.first && *i < job.first + job.count)
                    .map(|(_, f)| f.as_slice())
                    .unwrap_or(&[]);
                let head = TaskHead { id, trampoline: sub.trampoline, function: sub.function, count: job.count };
                let w = &mut self.workers[wi];
                let writer = &mut w.link.as_mut().expect("checked above").writer;
                let body = sub.slice(job.first, job.count);
                let spill = Some((KIND_TASK_BIG, SPILL_AT, id));
                match writer.queue_parts_spilling(KIND_TASK, spill, &head.encode(), body, item_fds) {
                    Ok(()) => {
                        if w.held.is_empty() {
                            w.since = now;
                        }
                        w.tasks_sent += 1;
                        w.held.push_back(Held { id, job });
                        progressed = true;
                    }
                    Err(e) => {
                        let task = sub.task;
                        let message = format!("cannot send the argument: {e}");
                        self.fail_job(&job, |_| TaskError::Codec { task, message: message.clone() });
                        progressed = true;
                    }
                }
            }
            if !progressed {
                return;
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
                    w.leaving = Some(Leaving::Killed(Kill::Protocol));
                    let _ = w.process.signal(libc::SIGKILL);
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

    /// Blocks in poll until a socket, a pidfd, the wake-up or the deadline needs us.
    fn wait(&mut self, deadline: Option<Instant>) {
        // Tell submitters to wake us, then look once more, so no submission is missed.
        self.state.asleep.store(true, Ordering::SeqCst);
        let busy = {
            let inbox = self.state.inbox.lock().unwrap_or_else(|e| e.into_inner());
            !inbox.jobs.is_empty() || inbox.cancel || inbox.closed != self.closed || inbox.terminate != self.terminating
        } || self.state.starts.any_done();
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            deadline.map(|d| d.saturating_duration_since(Instant::now()) + Duration::from_micros(50))
        };
        let mut events: Vec<(usize, bool, bool, bool)> = Vec::with_capacity(self.workers.len());
        {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(1 + 2 * self.workers.len());
            fds.push(PollFd::from_borrowed_fd(self.state.wakeup.fd(), PollFlags::IN));
            // A worker whose link is out has its place kept by the wake-up descriptor with
            // no events asked, which never reports anything.
            let placeholder = || PollFd::from_borrowed_fd(self.state.wakeup.fd(), PollFlags::empty());
            for w in &self.workers {
                match &w.link {
                    // After its end of file a socket is not polled: poll reports a hang-up
                    // whatever was asked, and would spin until the pidfd fires, starving the
                    // exiting worker of its CPU.
                    Some(link) if w.eof.is_none() => {
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
            if let Err(e) = poll(&mut fds, timeout) {
                log_event(&format!("multiproc pool: poll failed: {e}"));
                std::thread::sleep(Duration::from_millis(1));
            }
            if !fds[0].revents().is_empty() {
                self.state.wakeup.drain();
            }
            for wi in 0..self.workers.len() {
                let sock = fds[1 + 2 * wi].revents();
                let pid = fds[2 + 2 * wi].revents();
                let readable = sock.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR);
                let writable = sock.contains(PollFlags::OUT);
                let exited = !pid.is_empty();
                if readable || writable || exited {
                    events.push((wi, readable, writable, exited));
                }
            }
        }
        self.state.asleep.store(false, Ordering::SeqCst);
        let mut exited = Vec::new();
        for (wi, readable, writable, gone) in events {
            if readable {
                self.read_results(wi, false);
            }
            if writable {
                let w = &mut self.workers[wi];
                if let Some(link) = &mut w.link
                    && let Err(e) = link.writer.flush(Some(Instant::now()))
                    && !matches!(e, FrameError::TimedOut)
                {
                    w.ended();
                }
            }
            if gone && self.workers[wi].link.is_none() {
                // Parked: take its link back and reap it now. Lent: the caller brings it back.
                match self.state.lanes.unpark(self.workers[wi].serial) {
                    Some(p) => {
                        self.link_home(p);
                    }
                    None => self.workers[wi].exited_while_lent = true,
                }
            }
            if gone && self.workers[wi].link.is_some() {
                exited.push(wi);
            }
        }
        for wi in exited.into_iter().rev() {
            self.reap(wi);
        }
    }

    /// Reads the complete frames a worker sent. With `drain`, until the socket is empty
    /// (a worker that exited); otherwise until the read buffer is: poll is level-triggered
    /// and says when more came, so no read ends in `EAGAIN` on the latency path.
    fn read_results(&mut self, wi: usize, drain: bool) {
        let mut first = true;
        // One clock read per batch of results (they arrived together).
        let mut now: Option<Instant> = None;
        loop {
            let w = &mut self.workers[wi];
            let Some(link) = &mut w.link else { return };
            if !drain && !first && link.reader.buffered() == 0 {
                return;
            }
            first = false;
            let frame = match link.reader.recv(Some(Instant::now())) {
                Ok(f) => f,
                Err(FrameError::TimedOut) => return,
                Err(_) => {
                    w.ended();
                    return;
                }
            };
            let kind = frame.kind;
            let mut frame_fds = frame.fds;
            // A large result's body (from a memfd nobody writes again), which its `Bytes`
            // values share instead of copying.
            let mapped = match kind {
                KIND_RESULT_BIG => match spilled(frame.payload, &mut frame_fds) {
                    Ok(m) => Some(Arc::new(m)),
                    Err(e) => return self.protocol_error(wi, &format!("a large result that cannot be read: {e}")),
                },
                _ => None,
            };
            let payload: &[u8] = mapped.as_ref().map_or(frame.payload, |m| m.bytes());
            match kind {
                KIND_RESULT | KIND_RESULT_BIG => {
                    let Some((ResultHead { id, elapsed, count, flags }, body)) = ResultHead::decode(payload) else {
                        return self.protocol_error(wi, "a result too short for its header");
                    };
                    let Some(front) = w.held.front() else {
                        return self.protocol_error(wi, "a result for no task");
                    };
                    if front.id != id || front.job.count != count {
                        return self.protocol_error(wi, "a result out of order");
                    }
                    let held = w.held.pop_front().expect("checked above");
                    // The worker read this task's body before answering: its memfd is free,
                    // unless the worker still shares it.
                    if flags.kept_body {
                        link.writer.forget_spilled(id);
                    }
                    link.writer.release_spilled(id);
                    w.answered += count as u64;
                    w.since = *now.get_or_insert_with(Instant::now);
                    let job = held.job;
                    let task = job.sub.task;
                    let first = job.sub.base + job.first as usize;
                    let mut tally = Tally::default();
                    let n = crate::bytes::sharing(mapped.as_ref(), || {
                        fds::with_incoming(frame_fds, || {
                            job.sub.sink.deliver_chunk(task, first, body, count, &mut tally)
                        })
                    });
                    tally.add_to(&mut self.stats);
                    self.stats_dirty = true;
                    if n != count {
                        let rest =
                            Job { sub: job.sub.clone(), first: job.first + n, count: count - n, attempts: Vec::new() };
                        self.fail_job(&rest, |task| TaskError::Codec { task, message: "a cut result".into() });
                    }
                    self.measure(elapsed, count);
                }
                KIND_READY => {
                    w.ready = true;
                    self.start_failures = 0;
                }
                KIND_INIT_FAILED => {
                    w.init_error = Some(codec::decode::<String>(payload).unwrap_or_else(|e| e.to_string()));
                    w.leaving = Some(Leaving::InitFailed);
                }
                KIND_RETIRE => {
                    match codec::decode::<Retire>(payload) {
                        Ok(r) => {
                            w.leaving = Some(Leaving::Retired(r));
                            match r {
                                Retire::MaxTasks => self.stats.recycled_max_tasks += 1,
                                Retire::Memory { .. } => self.stats.recycled_memory += 1,
                            }
                            self.stats_dirty = true;
                        }
                        Err(_) => return self.protocol_error(wi, "an unreadable retirement"),
                    }
                    // Its replacement can start now, not when it has exited.
                    if !self.terminating {
                        self.replace_workers();
                    }
                }
                k => return self.protocol_error(wi, &format!("unexpected frame kind {k:#04x}")),
            }
        }
    }

    fn measure(&mut self, elapsed: u64, count: u32) {
        let per_item = elapsed / count.max(1) as u64;
        let avg = |old: u64, new: u64| if old == 0 { new.max(1) } else { (old * 7 + new) / 8 };
        self.task_ns = avg(self.task_ns, elapsed);
        self.item_ns = avg(self.item_ns, per_item);
    }

    fn protocol_error(&mut self, wi: usize, what: &str) {
        let w = &mut self.workers[wi];
        log_event(&format!("multiproc pool: {} (pid {}) sent {what}; killing it", w.name, w.process.pid()));
        w.leaving = Some(Leaving::Killed(Kill::Protocol));
        w.ended();
        let _ = w.process.signal(libc::SIGKILL);
    }

    /// A worker's process ended: account for every item it held.
    fn reap(&mut self, wi: usize) {
        if self.workers[wi].link.is_none() {
            return;
        }
        self.read_results(wi, true);
        let code = match self.workers[wi].process.try_wait() {
            Ok(Some(code)) => code,
            Ok(None) => return,
            Err(_) => -1,
        };
        let mut w = self.workers.swap_remove(wi);
        let pid = w.process.pid();
        let started = w.counters.get(SLOT_STARTED).load(Ordering::Acquire);
        let finished = w.counters.get(SLOT_FINISHED).load(Ordering::Acquire);
        let culprit = (started > finished).then_some(finished);
        let attempt = Attempt::from_exitcode(pid, code);
        let expected = match w.leaving {
            Some(Leaving::Stopped) => code == 0,
            Some(Leaving::Retired(_)) => code == 0,
            Some(Leaving::Killed(_)) => true,
            Some(Leaving::InitFailed) | None => false,
        };
        if !w.ready || w.leaving == Some(Leaving::InitFailed) {
            let why = w.init_error.take().unwrap_or_else(|| format!("died with {}", describe(code)));
            self.start_failed(format!("{} (pid {pid}) failed before its first task: {why}", w.name));
        } else if !expected {
            self.stats.workers_died += 1;
            match attempt.signal {
                Some(s) => *self.stats.died_by_signal.entry(s).or_default() += 1,
                None => *self.stats.died_by_exit_code.entry(code).or_default() += 1,
            }
            let running = culprit.and_then(|c| item_at(&w, c)).unwrap_or("no task");
            log_event(&format!(
                "multiproc pool: {} (pid {pid}) died with {} while running `{running}`",
                w.name,
                describe(code)
            ));
        }
        self.stats_dirty = true;
        // Items not finished go back in order; the one running gets the blame.
        let mut again: Vec<Job> = Vec::new();
        let mut pos = w.answered;
        for held in std::mem::take(&mut w.held) {
            let job = held.job;
            let end = pos + job.count as u64;
            match culprit {
                Some(c) if c >= pos && c < end => {
                    let k = (c - pos) as u32;
                    if k > 0 {
                        again.push(Job { sub: job.sub.clone(), first: job.first, count: k, attempts: Vec::new() });
                    }
                    let one =
                        Job { sub: job.sub.clone(), first: job.first + k, count: 1, attempts: job.attempts.clone() };
                    if let Some(retry) = self.blame(one, &w, attempt.clone(), code) {
                        again.push(retry);
                    }
                    if k + 1 < job.count {
                        again.push(Job {
                            sub: job.sub.clone(),
                            first: job.first + k + 1,
                            count: job.count - k - 1,
                            attempts: Vec::new(),
                        });
                    }
                }
                _ => again.push(job),
            }
            pos = end;
        }
        for job in again.into_iter().rev() {
            self.pending.push_front(job);
        }
        drop(w);
    }

    /// Fails (or re-queues, for a retry) the item that was running when its worker ended.
    fn blame(&mut self, mut one: Job, w: &Worker, attempt: Attempt, code: i32) -> Option<Job> {
        let task = one.sub.task;
        let pid = w.process.pid();
        match w.leaving {
            Some(Leaving::Killed(Kill::Timeout(timeout))) => {
                self.stats.tasks_timed_out += 1;
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
                let hint = self.hint(code);
                let attempts = one.attempts.clone();
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
        self.state.stats.finish();
    }
}

fn item_at(w: &Worker, pos: u64) -> Option<&'static str> {
    let mut at = w.answered;
    for h in &w.held {
        if pos < at + h.job.count as u64 {
            return Some(h.job.sub.task);
        }
        at += h.job.count as u64;
    }
    None
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
