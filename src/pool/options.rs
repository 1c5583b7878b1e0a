//! Options of one submission: callbacks, timeout, retries, chunking, window, progress.

use std::time::Duration;

use super::error::TaskError;

type Callback<R> = Box<dyn FnOnce(&R) + Send>;
type ErrorCallback = Box<dyn FnOnce(&TaskError) + Send>;

/// Options for [`Pool::apply_async_with`](crate::Pool::apply_async_with): callbacks, a
/// timeout and retries for this task.
///
/// Callbacks run in the parent, on the pool's driver thread, before the result counts
/// as ready (as in Python); they must be quick. One that waits there for another result
/// of the same pool is answered at once with [`TaskError::WaitInCallback`](crate::TaskError::WaitInCallback)
/// (that thread delivers the results, so the wait could never end), and `join` there is
/// [`PoolError::JoinInCallback`](crate::PoolError::JoinInCallback); `close`, `terminate` and
/// dropping the pool work. A panicking callback is reported on stderr and the pool goes on.
///
/// ```
/// use multiproc::TaskOptions;
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(1).unwrap();
/// let parent = std::process::id();
/// let r = pool.apply_async_with(square, 4, TaskOptions::new().callback(move |v: &u64| {
///     assert_eq!(std::process::id(), parent); // callbacks run in the parent
///     println!("got {v}");
/// }));
/// assert_eq!(r.get().unwrap(), 16);
/// ```
pub struct TaskOptions<R> {
    pub(crate) callback: Option<Callback<R>>,
    pub(crate) error_callback: Option<ErrorCallback>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: Option<u32>,
}

impl<R> Default for TaskOptions<R> {
    fn default() -> Self {
        TaskOptions { callback: None, error_callback: None, timeout: None, retries: None }
    }
}

impl<R> std::fmt::Debug for TaskOptions<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskOptions")
            .field("callback", &self.callback.is_some())
            .field("error_callback", &self.error_callback.is_some())
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

impl<R> TaskOptions<R> {
    /// No callbacks; the pool's timeout and retries.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(1)?;
    /// let h = pool.apply_async_with(square, 3, multiproc::TaskOptions::new());
    /// assert_eq!(h.get()?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` in the parent with the task's value when it succeeds.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(1)?;
    /// let opts = multiproc::TaskOptions::new().callback(|v: &u64| println!("got {v}")); // in this process
    /// assert_eq!(pool.apply_async_with(square, 3, opts).get()?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn callback(mut self, f: impl FnOnce(&R) + Send + 'static) -> Self {
        self.callback = Some(Box::new(f));
        self
    }

    /// Runs `f` in the parent with the error when the task fails.
    ///
    /// ```
    /// multiproc::init();
    /// fn fail(_: ()) { panic!("no") }
    ///
    /// let pool = multiproc::Pool::new(1)?;
    /// let opts = multiproc::TaskOptions::new().error_callback(|e| println!("failed: {e}"));
    /// assert!(pool.apply_async_with(fail, (), opts).get().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn error_callback(mut self, f: impl FnOnce(&TaskError) + Send + 'static) -> Self {
        self.error_callback = Some(Box::new(f));
        self
    }

    /// Kills the worker if the task runs longer than `timeout`; the task fails with
    /// [`TaskError::Timeout`] and a fresh worker takes over.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// use std::time::Duration;
    /// let pool = multiproc::Pool::new(1)?;
    /// let opts = multiproc::TaskOptions::new().timeout(Duration::from_secs(60));
    /// assert_eq!(pool.apply_async_with(square, 3, opts).get()?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Re-runs the task on a fresh worker up to `n` times if its worker dies. A timeout
    /// is final unless the pool was built with
    /// [`retry_timeouts(true)`](crate::PoolBuilder::retry_timeouts).
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(1)?;
    /// let opts = multiproc::TaskOptions::new().retries(1);
    /// assert_eq!(pool.apply_async_with(square, 3, opts).get()?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = Some(n);
        self
    }
}

/// How a map cuts its items into tasks.
///
/// ```
/// use multiproc::{Chunksize, MapOptions};
///
/// fn double(x: u32) -> u32 { 2 * x }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2)?;
/// let opts = MapOptions::new().chunksize(Chunksize::Fixed(25)); // 4 tasks of 25 items
/// assert_eq!(pool.map_with(double, 0..100, &opts)?[99], 198);
/// let adaptive = MapOptions::new().chunksize(Chunksize::Adaptive);
/// assert_eq!(pool.map_with(double, 0..100, &adaptive)?.len(), 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunksize {
    /// Python's default: `map` sends `ceil(n / (4 × workers))` items per task (and, for a
    /// map of known length, at most about 2 MiB of arguments per task), `imap` one.
    Default,
    /// This many items per task.
    Fixed(usize),
    /// Sized while running from the measured time per item (about 2 ms of work per task).
    Adaptive,
}

/// Options for the map family (`map_async_with`, `imap_with`, `imap_unordered_with`,
/// `starmap_async_with`).
///
/// ```
/// use multiproc::{Chunksize, MapOptions};
/// fn double(x: u64) -> u64 { x * 2 }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2).unwrap();
/// let opts = MapOptions::new().chunksize(Chunksize::Fixed(10)).window(100);
/// let v: Vec<u64> = pool.imap_with(double, 0..1000, &opts).map(Result::unwrap).collect();
/// assert_eq!(v[999], 1998);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MapOptions {
    pub(crate) chunksize: Option<Chunksize>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: Option<u32>,
    pub(crate) window: Option<usize>,
    pub(crate) progress: bool,
}

impl MapOptions {
    /// Python's defaults and the pool's timeout and retries.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(2)?;
    /// let v = pool.map_with(square, 0..10u64, &multiproc::MapOptions::new())?;
    /// assert_eq!(v[9], 81);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How items are cut into tasks. A worker's death costs only the item it was running
    /// whatever the chunk size.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// use multiproc::{Chunksize, MapOptions};
    /// let pool = multiproc::Pool::new(2)?;
    /// let v = pool.map_with(square, 0..10u64, &MapOptions::new().chunksize(Chunksize::Fixed(5)))?;
    /// assert_eq!(v.len(), 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn chunksize(mut self, c: Chunksize) -> Self {
        self.chunksize = Some(c);
        self
    }

    /// A timeout for each task (a chunk counts as one task).
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// use std::time::Duration;
    /// let pool = multiproc::Pool::new(2)?;
    /// let opts = multiproc::MapOptions::new().timeout(Duration::from_secs(60)); // per task
    /// assert_eq!(pool.map_with(square, 0..4u64, &opts)?, [0, 1, 4, 9]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Re-runs an item whose worker died, up to `n` times.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(2)?;
    /// let opts = multiproc::MapOptions::new().retries(2);
    /// assert_eq!(pool.map_with(square, 0..4u64, &opts)?, [0, 1, 4, 9]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = Some(n);
        self
    }

    /// For `imap`: at most this many items are in flight or waiting to be consumed.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(2)?;
    /// let opts = multiproc::MapOptions::new().window(8); // at most 8 items ahead of the reader
    /// let v: Result<Vec<u64>, _> = pool.imap_with(square, 0..100u64, &opts).collect();
    /// assert_eq!(v?.len(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn window(mut self, items: usize) -> Self {
        self.window = Some(items.max(1));
        self
    }

    /// Draws a progress bar on the terminal. Only with the `progress` feature: without it
    /// the method does not exist, so asking for a bar is a compile error rather than a
    /// setting silently ignored.
    ///
    /// ```
    /// # #[cfg(feature = "progress")]
    /// # {
    /// fn double(x: u64) -> u64 { x * 2 }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let opts = multiproc::MapOptions::new().progress(true);
    /// assert_eq!(pool.map_with(double, 0..100, &opts).unwrap()[99], 198);
    /// # }
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }
}

/// How a pool starts its workers; see [`PoolBuilder::start_method`](crate::PoolBuilder::start_method).
///
/// ```
/// multiproc::init();
/// let pool = multiproc::Pool::builder()
///     .processes(2)
///     .start_method(multiproc::StartMethod::ForkServer)
///     .build()
///     .unwrap();
/// fn double(x: u64) -> u64 { x * 2 }
/// assert_eq!(pool.apply(double, 21).unwrap(), 42);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartMethod {
    /// Every worker is this program started again (exec, dynamic loading, handshake,
    /// `init()`): about 2 ms a worker. Nothing of the parent but what is sent reaches it
    /// (Python's `spawn`). The default.
    #[default]
    Exec,
    /// One template process per pool, itself started as `Exec` starts a worker, runs the
    /// optional [`preload`](crate::PoolBuilder::preload) and then forks every worker on
    /// request, replacements included: no exec, and what the preload loaded is shared
    /// copy-on-write (Python's `forkserver`). The template forks only while it is
    /// single-threaded; workers get the same handshake, containment, limits and sandbox
    /// as exec'd ones; a template that dies is started again.
    ForkServer,
}

impl StartMethod {
    /// `MULTIPROC_START_METHOD` (`exec` or `fork-server`; unset or empty: exec), or why
    /// its value is not one of those.
    pub(crate) fn from_env() -> Result<StartMethod, String> {
        match std::env::var("MULTIPROC_START_METHOD").ok().as_deref() {
            None | Some("") | Some("exec") => Ok(StartMethod::Exec),
            Some("fork-server") | Some("forkserver") => Ok(StartMethod::ForkServer),
            Some(other) => Err(format!("MULTIPROC_START_METHOD={other:?} is not one of exec, fork-server")),
        }
    }
}
