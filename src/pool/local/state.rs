//! What the local engine's driver shares with the pool's users and its helper threads:
//! the inbox of submissions, the wake-up, the statistics board, the starts and the
//! express lane.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use super::lane::Lanes;
use super::starts::Starts;
use super::worker_handle::{WorkerConfig, start_worker};
use crate::pool::stats::PoolStats;
use crate::pool::submit::Job;
use crate::sys::event::Wakeup;

/// Requests from users to the driver, under one lock.
#[derive(Default)]
pub(crate) struct Inbox {
    pub(crate) jobs: VecDeque<Job>,
    pub(crate) closed: bool,
    pub(crate) terminate: bool,
    /// Some sink was cancelled: the driver looks for its items.
    pub(crate) cancel: bool,
    /// The driver has ended: nothing will run any more.
    pub(crate) finished: bool,
}

/// The statistics the driver publishes, and requests for a fresh copy: `Pool::stats`
/// asks, and the driver answers at the end of its current round, so a snapshot taken
/// after seeing a result includes that result.
pub(crate) struct StatsBoard {
    /// The last snapshot, and the request number it answers.
    pub(crate) published: Mutex<(PoolStats, u64)>,
    pub(crate) cond: Condvar,
    pub(crate) wanted: AtomicU64,
    /// The driver has ended: the last snapshot is final.
    pub(crate) done: AtomicBool,
    pub(crate) driver: OnceLock<ThreadId>,
}

impl StatsBoard {
    pub(crate) fn new(initial: PoolStats) -> StatsBoard {
        StatsBoard {
            published: Mutex::new((initial, 0)),
            cond: Condvar::new(),
            wanted: AtomicU64::new(0),
            done: AtomicBool::new(false),
            driver: OnceLock::new(),
        }
    }

    /// The driver's side: publishes when something changed or a copy was asked for.
    pub(crate) fn publish(&self, stats: &PoolStats, changed: bool) {
        let wanted = self.wanted.load(Ordering::SeqCst);
        let mut p = self.published.lock().unwrap_or_else(|e| e.into_inner());
        if !changed && p.1 >= wanted {
            return;
        }
        p.0.clone_from(stats);
        p.1 = wanted;
        self.cond.notify_all();
    }

    pub(crate) fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        let _p = self.published.lock().unwrap_or_else(|e| e.into_inner());
        self.cond.notify_all();
    }

    /// A fresh snapshot: asks the driver (woken by `wake`) and waits for its answer.
    /// From the driver's own thread (a callback), the last published copy.
    pub(crate) fn snapshot(&self, wake: impl FnOnce()) -> PoolStats {
        let on_driver = self.driver.get() == Some(&std::thread::current().id());
        let want = self.wanted.fetch_add(1, Ordering::SeqCst) + 1;
        if !on_driver {
            wake();
        }
        let mut p = self.published.lock().unwrap_or_else(|e| e.into_inner());
        while !on_driver && p.1 < want && !self.done.load(Ordering::SeqCst) {
            // The bound only guards against a driver that is gone without saying so.
            p = self.cond.wait_timeout(p, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
        p.0.clone()
    }
}

/// What users, helper threads and the driver share.
pub(crate) struct State {
    pub(crate) inbox: Mutex<Inbox>,
    pub(crate) wakeup: Wakeup,
    /// The driver is (about to be) blocked in poll and needs a wake-up.
    pub(crate) asleep: AtomicBool,
    pub(crate) stats: StatsBoard,
    /// Workers being started by helper threads, and those started, for the driver to adopt.
    pub(crate) starts: Starts,
    /// Idle workers' sockets, for `apply` to use without the driver.
    pub(crate) lanes: Lanes,
    /// The threads that start workers, kept for the next start (a replacement starts
    /// without a thread made and ended for it), joined when the driver ends (so none
    /// outlives the pool holding this state, and its descriptors, a moment longer).
    starters: Arc<Starters>,
}

/// Starts waiting for a thread, and the threads that run them.
#[derive(Default)]
struct Starters {
    queue: Mutex<StartQueue>,
    work: Condvar,
}

#[derive(Default)]
struct StartQueue {
    pending: VecDeque<(Arc<WorkerConfig>, u32)>,
    /// Threads waiting for a start (each pending start has one of them, or a new thread).
    waiting: usize,
    /// No start will come any more: the threads end once `pending` is empty.
    quit: bool,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Starters {
    fn lock(&self) -> MutexGuard<'_, StartQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends every thread once the starts queued are done; without waiting for them.
    fn quit(&self) -> Vec<std::thread::JoinHandle<()>> {
        let mut q = self.lock();
        q.quit = true;
        self.work.notify_all();
        std::mem::take(&mut q.threads)
    }

    /// A start thread: runs the starts queued, one after another, for the state behind
    /// `state` as long as it lives (the thread keeps it only while a start runs, so that a
    /// pool whose build failed before its driver ran still drops it, and ends the threads).
    fn serve(&self, state: &std::sync::Weak<State>) {
        let mut q = self.lock();
        loop {
            if let Some((cfg, n)) = q.pending.pop_front() {
                drop(q);
                if let Some(state) = state.upgrade() {
                    state.run_start(&cfg, n);
                }
                q = self.lock();
                continue;
            }
            if q.quit {
                return;
            }
            q.waiting += 1;
            q = self.work.wait(q).unwrap_or_else(|e| e.into_inner());
            q.waiting -= 1;
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // The threads keep no strong reference while idle: they end now.
        drop(self.starters.quit());
    }
}

impl State {
    pub(crate) fn new(lanes: Lanes) -> Result<State, crate::Error> {
        Ok(State {
            inbox: Mutex::new(Inbox::default()),
            wakeup: Wakeup::new().map_err(crate::Error::Io)?,
            asleep: Default::default(),
            stats: StatsBoard::new(PoolStats::default()),
            starts: Starts::default(),
            lanes,
            starters: Arc::new(Starters::default()),
        })
    }

    pub(crate) fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues jobs; gives them back if the pool accepts no more. `more` is for a running
    /// `imap`, which may go on feeding a closed pool until it has drained.
    pub(crate) fn submit(&self, jobs: impl IntoIterator<Item = Job>, more: bool) -> Result<(), Vec<Job>> {
        {
            let mut inbox = self.inbox();
            if inbox.finished || inbox.terminate || (inbox.closed && !more) {
                return Err(jobs.into_iter().collect());
            }
            inbox.jobs.extend(jobs);
        }
        self.wake();
        Ok(())
    }

    /// Wakes the driver even if it did not say it sleeps (from threads it does not wait for).
    pub(crate) fn wake_always(&self) {
        self.asleep.store(false, Ordering::SeqCst);
        self.wakeup.wake();
    }

    pub(crate) fn wake(&self) {
        if self.asleep.swap(false, Ordering::SeqCst) {
            self.wakeup.wake();
        }
    }

    pub(crate) fn request_cancel(&self) {
        self.inbox().cancel = true;
        self.wake();
    }

    /// Starts worker number `n` in a start thread (an idle one, else a new one); its
    /// result lands in `starts` and wakes the driver.
    pub(crate) fn launch(self: &Arc<Self>, cfg: Arc<WorkerConfig>, n: u32) -> std::io::Result<()> {
        let mut q = self.starters.lock();
        q.pending.push_back((cfg, n));
        if q.waiting >= q.pending.len() {
            self.starters.work.notify_one();
            return Ok(());
        }
        let (state, starters) = (Arc::downgrade(self), self.starters.clone());
        let spawned =
            std::thread::Builder::new().name("multiproc-pool-spawn".into()).spawn(move || starters.serve(&state));
        match spawned {
            Ok(thread) => {
                q.threads.retain(|t| !t.is_finished());
                q.threads.push(thread);
                Ok(())
            }
            Err(e) => {
                q.pending.pop_back();
                Err(e)
            }
        }
    }

    /// Runs start `n` on this thread; its result lands in `starts` and wakes the driver.
    fn run_start(&self, cfg: &WorkerConfig, n: u32) {
        let starts = &self.starts;
        let start = || {
            start_worker(cfg, n, |pidfd| {
                if let Ok(fd) = pidfd.try_clone_to_owned() {
                    starts.running(n, fd);
                }
            })
        };
        // Even a start that panics must end as an entry (the invariant of `starts`).
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(start)).unwrap_or_else(|_| {
            Err(crate::Error::Io(std::io::Error::other(format!("starting PoolWorker-{n} panicked"))))
        });
        starts.finish(n, r);
        self.wake_always();
    }

    /// Waits for every start thread to end (the driver, once every start has ended).
    pub(crate) fn join_start_threads(&self) {
        for t in self.starters.quit() {
            let _ = t.join();
        }
    }
}
