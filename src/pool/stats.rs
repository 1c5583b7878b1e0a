//! What happened in a pool, for [`Pool::stats`](crate::Pool::stats).

use std::collections::BTreeMap;

/// Counters of a pool's life: workers started, died (by cause) and recycled; tasks
/// done, failed, retried, timed out. A snapshot: later events do not change it.
///
/// ```
/// multiproc::init();
/// fn double(x: u64) -> u64 { x * 2 }
/// let pool = multiproc::Pool::new(2).unwrap();
/// pool.map(double, 0..10).unwrap();
/// let stats = pool.stats();
/// assert_eq!(stats.tasks_done, 10);
/// assert_eq!(stats.workers_died, 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Workers started, replacements included.
    pub workers_started: u64,
    /// Workers running now (not counting those still starting: right after `build`,
    /// that may be one).
    pub workers_alive: usize,
    /// The process ids of the workers running now (as `workers_alive`).
    pub worker_pids: Vec<u32>,
    /// Workers that died unexpectedly (not asked to stop, not recycled).
    pub workers_died: u64,
    /// Unexpected deaths by signal number.
    pub died_by_signal: BTreeMap<i32, u64>,
    /// Unexpected exits by exit code.
    pub died_by_exit_code: BTreeMap<i32, u64>,
    /// Workers killed because a task ran past its timeout.
    pub workers_killed_for_timeout: u64,
    /// Workers killed because their running task was cancelled.
    pub workers_killed_for_cancel: u64,
    /// Workers replaced after `max_tasks_per_child` tasks.
    pub recycled_max_tasks: u64,
    /// Workers replaced because their memory passed `max_memory_per_child`.
    pub recycled_memory: u64,
    /// Workers whose initializer failed.
    pub initializer_failures: u64,
    /// Items that gave a value.
    pub tasks_done: u64,
    /// Items that panicked.
    pub tasks_panicked: u64,
    /// Items whose worker died under them (after their retries).
    pub tasks_worker_died: u64,
    /// Items re-run after their worker died (`retries`).
    pub tasks_retried: u64,
    /// Tasks (one item each, or a chunk of a map's) taken back from a worker before it
    /// started them, because it was busy with a long task and another worker was idle:
    /// each then ran on another worker, once.
    pub tasks_reclaimed: u64,
    /// Items that ran past their timeout.
    pub tasks_timed_out: u64,
    /// Items cancelled.
    pub tasks_cancelled: u64,
    /// Items failed by `terminate()`.
    pub tasks_terminated: u64,
    /// Items whose argument or result did not (de)serialize.
    pub tasks_codec_failed: u64,
    /// Callbacks that panicked (reported, and the pool went on).
    pub callback_panics: u64,
    /// How what the workers' tasks start is contained (see [`Contain`](crate::Contain)).
    pub containment: crate::Containment,
    /// The workers' sandbox as it takes effect on this kernel
    /// (`Sandbox::in_effect`, feature `sandbox`: with `best_effort`, what the kernel lacks
    /// is named as left out); `None` without a sandbox.
    pub sandbox: Option<String>,
    /// The fork server's template process, with [`StartMethod::ForkServer`](crate::StartMethod).
    pub fork_server_pid: Option<u32>,
    /// Fork-server templates started: 1, plus one for each that died and was replaced
    /// (0 without a fork server).
    pub fork_servers_started: u64,
}

impl PoolStats {
    /// Items that gave no value, for any reason.
    ///
    /// ```
    /// multiproc::init();
    /// fn fail(_: ()) { panic!("no") }
    ///
    /// let pool = multiproc::Pool::new(1)?;
    /// let _ = pool.apply(fail, ());
    /// assert_eq!(pool.stats().tasks_failed(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tasks_failed(&self) -> u64 {
        self.tasks_panicked
            + self.tasks_worker_died
            + self.tasks_timed_out
            + self.tasks_cancelled
            + self.tasks_terminated
            + self.tasks_codec_failed
    }
}
