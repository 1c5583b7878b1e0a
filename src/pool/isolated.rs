//! `Isolated`: one call in a fresh process of its own (pebble's `concurrent.process`),
//! with the pool's limits and errors.
//!
//! Under the hood it is a pool of one worker, built for the call and dropped after it:
//! the same start, handshake, timeout, death accounting and panic reports as any pool task,
//! so its errors are exactly a pool's. The worker is not recycled for another call: the pool
//! is dropped (its worker killed and reaped) as soon as the outcome is in.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::builder::PoolBuilder;
use super::error::{PoolError, TaskError};
use super::handle::Pool;
use super::result::AsyncResult;

/// Runs `f(arg)` in a fresh process of its own and returns its value, or why there is none
/// (the errors of a pool task: [`TaskError::Panicked`] with its message,
/// [`TaskError::WorkerDied`] with the signal, ...). Shorthand for
/// [`Isolated::new(f, arg).call()`](Isolated::call); see [`Isolated`] for a timeout and limits.
///
/// It is not called `run`: [`Process`](crate::Process) already names the code a process runs
/// its `run`, as Python does, and "isolated" says what the call buys.
///
/// ```
/// fn shout(s: String) -> String { s.to_uppercase() }
///
/// multiproc::init();
/// assert_eq!(multiproc::isolated(shout, "hi".to_string()).unwrap(), "HI");
/// ```
pub fn isolated<F, A, R>(f: F, arg: A) -> Result<R, TaskError>
where
    F: Fn(A) -> R + Copy + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    Isolated::new(f, arg).call()
}

/// One call `f(arg)` in a fresh process, with a timeout and limits, then
/// [`call`](Isolated::call). A crash, a panic or an exhausted limit ends the call with the
/// pool's [`TaskError`], never the caller.
///
/// Each call starts a process and ends it. Measured by `examples/async_isolated.rs`
/// (release build, a loaded 2-core machine, means of 20 calls over three runs), a call
/// costs the same as a bare [`Process`](crate::Process) start and join, 1.3 to 10 ms
/// against 2.3 to 7 ms, where a call on a pool already up costs 0.03 to 0.15 ms: for
/// many calls, a [`Pool`] reuses its workers.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Isolated, TaskError};
/// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
/// fn boom(_: u8) -> u8 { panic!("boom") }
///
/// multiproc::init();
/// let quick = Isolated::new(nap, 1).timeout(Duration::from_secs(60)).call();
/// assert_eq!(quick.unwrap(), 1);
/// let slow = Isolated::new(nap, 60_000).timeout(Duration::from_millis(100)).call();
/// assert!(matches!(slow, Err(TaskError::Timeout { .. })));
/// assert!(matches!(Isolated::new(boom, 0).call(), Err(TaskError::Panicked { message, .. }) if message == "boom"));
/// ```
#[derive(Debug)]
#[must_use = "nothing runs until `call`"]
pub struct Isolated<F, A> {
    f: F,
    arg: A,
    builder: PoolBuilder,
}

impl<F, A> Isolated<F, A> {
    /// The call `f(arg)`, with no timeout and no limit.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// assert_eq!(multiproc::Isolated::new(square, 5).call::<u64>()?, 25);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(f: F, arg: A) -> Self {
        Isolated { f, arg, builder: Pool::builder().processes(1) }
    }

    /// Kills the process if the call runs longer: [`TaskError::Timeout`].
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// fn forever(_: ()) { loop { std::thread::park() } }
    ///
    /// let r = multiproc::Isolated::new(forever, ()).timeout(Duration::from_millis(200)).call::<()>();
    /// assert!(matches!(r, Err(multiproc::TaskError::Timeout { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.builder = self.builder.timeout(timeout);
        self
    }

    /// Tells the call to stop ([`task::cancelled`](crate::task::cancelled)) this long after
    /// it starts, before its [`timeout`](Isolated::timeout) kills it; see
    /// [`PoolBuilder::soft_timeout`](crate::PoolBuilder::soft_timeout).
    pub fn soft_timeout(mut self, soft: Duration) -> Self {
        self.builder = self.builder.soft_timeout(soft);
        self
    }

    /// Caps the process's address space (`RLIMIT_AS`): an allocation past it fails in the
    /// process, which ends the call with [`TaskError::WorkerDied`] and a hint. Leave room
    /// for the program itself; see [`PoolBuilder::max_address_space`].
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let r = multiproc::Isolated::new(square, 5).max_address_space(4 << 30).call::<u64>()?;
    /// assert_eq!(r, 25);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_address_space(mut self, bytes: u64) -> Self {
        self.builder = self.builder.max_address_space(bytes);
        self
    }

    /// The largest argument or result, in bytes; see [`PoolBuilder::max_frame_size`].
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let r = multiproc::Isolated::new(square, 5).max_frame_size(1 << 20).call::<u64>()?;
    /// assert_eq!(r, 25);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_frame_size(mut self, bytes: u32) -> Self {
        self.builder = self.builder.max_frame_size(bytes);
        self
    }

    /// Runs the call again in a new process if the process dies, up to `n` times; see
    /// [`TaskOptions::retries`](crate::TaskOptions::retries).
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// assert_eq!(multiproc::Isolated::new(square, 5).retries(2).call::<u64>()?, 25);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retries(mut self, n: u32) -> Self {
        self.builder = self.builder.retries(n);
        self
    }

    /// How long the process may take to start (default 30 s).
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// use std::time::Duration;
    /// let r = multiproc::Isolated::new(square, 5).start_timeout(Duration::from_secs(30)).call::<u64>()?;
    /// assert_eq!(r, 25);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.builder = self.builder.start_timeout(timeout);
        self
    }

    /// Runs the process from another executable of the same build; see
    /// [`PoolBuilder::executable`].
    pub fn executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.builder = self.builder.executable(path);
        self
    }

    /// Starts the process, runs the call, waits for its outcome, and ends the process.
    /// A process that cannot start is [`TaskError::PoolBroken`] with the reason.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// assert_eq!(multiproc::Isolated::new(square, 5).call::<u64>()?, 25);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call<R>(self) -> Result<R, TaskError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let task = std::any::type_name::<F>();
        let pool = self.builder.build().map_err(|e| not_started(task, e))?;
        pool.apply(self.f, self.arg)
    }

    /// Starts the process and the call, and returns at once with a typed handle to join
    /// (a [`Process`](crate::Process) whose target returns a value). Returns once the
    /// process is up; one that cannot start is [`TaskError::PoolBroken`] with the reason.
    ///
    /// ```
    /// use multiproc::Isolated;
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let running = Isolated::new(square, 12).start().unwrap();
    /// assert_ne!(running.pid(), std::process::id());
    /// // ... the caller does something else meanwhile ...
    /// assert_eq!(running.join().unwrap(), 144);
    /// ```
    pub fn start<R>(self) -> Result<IsolatedTask<R>, TaskError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let task = std::any::type_name::<F>();
        let pool = self.builder.build().map_err(|e| not_started(task, e))?;
        let pid = pool.stats().worker_pids.first().copied().unwrap_or(0);
        let result = pool.apply_async(self.f, self.arg);
        Ok(IsolatedTask { result, pid, pool })
    }
}

/// A call running in a process of its own, from [`Isolated::start`]: joined with
/// [`join`](IsolatedTask::join) or `.await` (it is a [`Future`] that needs no particular
/// runtime), stopped with [`cancel`](IsolatedTask::cancel).
///
/// Dropping it kills the process if the call has not ended: the process belongs to the
/// handle, so nothing runs on unowned.
///
/// ```
/// use multiproc::Isolated;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let task = Isolated::new(square, 7).start()?;
/// assert_ne!(task.pid(), std::process::id()); // a process of its own
/// assert_eq!(task.join()?, 49);
/// # Ok::<(), multiproc::TaskError>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the handle kills the process"]
pub struct IsolatedTask<R> {
    // Before `pool`: dropped first, so the pool's end is the last thing the handle does.
    result: AsyncResult<R>,
    pid: u32,
    pool: Pool,
}

impl<R> IsolatedTask<R> {
    /// The process's id (with [`retries`](Isolated::retries), a call run again runs in
    /// another process).
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let t = multiproc::Isolated::new(square, 2).start::<u64>()?;
    /// assert_ne!(t.pid(), std::process::id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the call and returns its value or why there is none; the process ends.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let t = multiproc::Isolated::new(square, 2).start::<u64>()?;
    /// assert_eq!(t.join()?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(self) -> Result<R, TaskError> {
        let IsolatedTask { result, pool, .. } = self;
        let outcome = result.get();
        drop(pool);
        outcome
    }

    /// Whether the call has ended.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let t = multiproc::Isolated::new(square, 2).start::<u64>()?;
    /// let _ = t.is_finished(); // without waiting
    /// assert_eq!(t.join()?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_finished(&self) -> bool {
        self.result.ready()
    }

    /// Waits at most `timeout`; returns whether the call has ended.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// use std::time::Duration;
    /// let t = multiproc::Isolated::new(square, 2).start::<u64>()?;
    /// assert!(t.wait_timeout(Duration::from_secs(30)));
    /// assert!(t.is_finished());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.result.wait_timeout(timeout)
    }

    /// Kills the process unless the call has ended (then returns `false`); `join` gives
    /// [`TaskError::Cancelled`].
    ///
    /// ```
    /// multiproc::init();
    /// fn forever(_: ()) { loop { std::thread::park() } }
    ///
    /// let t = multiproc::Isolated::new(forever, ()).start::<()>()?;
    /// assert!(t.cancel()); // kills the process
    /// assert!(t.join().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self) -> bool {
        self.result.cancel()
    }
}

impl<R> Future for IsolatedTask<R> {
    type Output = Result<R, TaskError>;

    /// Ready once the call has ended (the process ends when the handle is dropped).
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.result).poll(cx)
    }
}

fn not_started(task: &'static str, e: PoolError) -> TaskError {
    TaskError::PoolBroken { task, reason: format!("its process did not start: {e}") }
}
