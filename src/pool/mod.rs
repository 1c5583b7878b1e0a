//! `Pool`: Python's `multiprocessing.Pool`, with fault tolerance.
//!
//! The pool is a front over one engine, chosen once when it is built (`engine`): the
//! local engine (`local`: worker processes fed by a driver thread) or a remote one (any
//! [`Dispatch`](dispatch::Dispatch), e.g. a cluster; `backend` makes such pools).
//!
//! The files, lowest first (a file uses only files above it in this list):
//!
//! - `error`, `stats`, `options`, `star`: what users see of outcomes and settings;
//! - `item`: one item's bytes, and the one decoder of a result item;
//! - `chunk`: the chunk policy (pure functions);
//! - `submit`: submissions, the jobs they are cut into, the sinks outcomes go to;
//! - `trampoline`: the code that runs one item wherever a task runs;
//! - `dispatch`: the remote engine's interface; `local`: the local engine;
//! - `engine`: the engine behind the front (`Shared`);
//! - `result`, `map`: the handles (`AsyncResult`, `MapResult`, `IMapIter`) and the sinks
//!   behind them; `completion`: many `AsyncResult`s waited on together (`as_completed`,
//!   `wait_results`); `stream` (feature `stream`): `Stream` views of `IMapIter` and
//!   `AsCompleted`; `encode`: a whole map's items into submissions;
//! - `task`: what a running task knows of its time limits (`multiproc::task`);
//! - `handle` (the `Pool` struct), `builder`, `backend`, `isolated` (one call in a
//!   one-worker pool of its own), and this file: the `Pool` methods.
//!
//! One `apply_async` travels: this file encodes the argument (`submit::Encoder`) into a
//! `Job` whose sink is a `result::Slot`, `engine::Shared::submit` hands it to the engine,
//! the local driver (`local::driver`) sends it to a worker (`local::worker`) as a `TASK`
//! (`local::protocol`), reads the `RESULT`, and the slot decodes the item
//! (`item::Outcome`) for the `AsyncResult`.

pub(crate) mod backend;
#[cfg(feature = "bench-internals")]
pub(crate) mod bench;
mod builder;
pub(crate) mod chunk;
mod completion;
pub(crate) mod dispatch;
mod encode;
pub(crate) mod engine;
mod error;
mod fork_server;
mod guard;
mod handle;
mod isolated;
pub(crate) mod item;
pub(crate) mod last_words;
pub(crate) mod local;
mod map;
mod options;
mod result;
mod star;
pub(crate) mod stats;
#[cfg(feature = "stream")]
mod stream;
pub(crate) mod submit;
pub mod task;
pub(crate) mod trampoline;

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use builder::PoolBuilder;
pub use completion::{AsCompleted, NextCompleted, ReturnWhen, as_completed, wait_results};
pub use error::{Attempt, PoolError, RemoteFailure, TaskError};
pub use fork_server::ForkServer;
pub use handle::Pool;
pub use isolated::{Isolated, IsolatedTask, isolated};
pub use item::Delivered;
pub use map::{IMapIter, MapResult, NextItem};
pub use options::{Chunksize, MapOptions, StartMethod, TaskOptions};
pub use result::AsyncResult;
pub use star::StarFn;
pub use stats::PoolStats;
#[cfg(feature = "stream")]
pub use stream::{CompletedStream, IMapStream};

use chunk::Chunking;
pub(crate) use item::{PanicReport, TAG_CODEC, TAG_OK, TAG_PANIC};
use local::express::Express;
use map::{Collector, FeedSpec};
use result::{JOINT_SUBMISSION_BYTES, Slot, SlotHome};
use submit::{Encoder, ItemBytes, Job, Sink, Submission};
pub(crate) use trampoline::{Trampoline as ItemTrampoline, install_panic_hook};
use trampoline::{Trampoline, star_trampoline, unary_trampoline};

use crate::spawn::identity;

fn trampoline_offset(t: Trampoline) -> i64 {
    identity::offset_of(t as usize)
}

/// The offset of the pool's trampoline for `F: Fn(A) -> R`: what names a task's types
/// across processes of one build, here and on other machines.
pub(crate) fn unary_trampoline_offset<F, A, R>() -> i64
where
    F: Fn(A) -> R + Copy + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    trampoline_offset(unary_trampoline::<F, A, R>)
}

impl Pool {
    /// A pool of `processes` workers (Python's `Pool(processes)`). It returns as soon as
    /// one worker is up (see [`PoolBuilder::build`]); the others join as they come up.
    ///
    /// ```
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// assert_eq!(pool.processes(), 2);
    /// ```
    pub fn new(processes: usize) -> Result<Pool, PoolError> {
        Pool::builder().processes(processes).build()
    }

    /// Every setting: initializer, recycling, memory caps, timeouts, retries.
    ///
    /// ```
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder().processes(2).max_tasks_per_child(10).build().unwrap();
    /// assert_eq!(pool.processes(), 2);
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// How many workers the pool keeps running.
    ///
    /// ```
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(3)?;
    /// assert_eq!(pool.processes(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// A snapshot of the pool's counters.
    ///
    /// It includes every outcome the caller has already seen: the driver answers with a
    /// fresh copy at the end of its current round. (Called from a callback, which runs on
    /// the driver's thread, it returns the last published copy.)
    ///
    /// ```
    /// fn boom(_: u8) -> u8 { panic!("boom") }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// assert!(pool.apply(boom, 0).is_err());
    /// let s = pool.stats();
    /// assert_eq!((s.tasks_panicked, s.workers_died, s.workers_alive), (1, 0, 1));
    /// ```
    pub fn stats(&self) -> PoolStats {
        self.shared.stats()
    }

    /// Runs `f(arg)` in a worker and waits for it (Python's `apply`).
    ///
    /// When a worker is idle, the calling thread sends it the task and reads the result
    /// itself (the *express lane*), so a call costs one socket round trip; otherwise the
    /// task queues like any other. Either way a death, a timeout (the pool's
    /// [`timeout`](PoolBuilder::timeout)) or a panic ends as described on [`TaskError`],
    /// and the pool goes on.
    ///
    /// ```
    /// fn shout(s: String) -> String { s.to_uppercase() }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// assert_eq!(pool.apply(shout, "hi".to_string()).unwrap(), "HI");
    /// ```
    pub fn apply<F, A, R>(&self, f: F, arg: A) -> Result<R, TaskError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let task = std::any::type_name::<F>();
        let function = identity::encode_fn::<F, fn(A) -> R>(f);
        let trampoline = trampoline_offset(unary_trampoline::<F, A, R>);
        let (bytes, fds) = match Encoder::one(&arg) {
            Ok(v) => v,
            Err(message) => return Err(TaskError::Codec { task, message }),
        };
        let timeout = self.shared.default_timeout;
        let retries = self.shared.default_retries;
        if fds.is_empty() {
            // The express lane: this thread runs the task on an idle worker itself.
            let mut handed: Option<SlotHome<R>> = None;
            let make_job = || {
                let item = (bytes.clone(), Vec::new());
                let (job, home) =
                    self.one_task(task, (trampoline, function), item, timeout, retries, Slot::new(task, None, None));
                handed = Some(home);
                job
            };
            match self.shared.express::<R>(task, (trampoline, function), &bytes, timeout, make_job) {
                Express::Done(outcome) => return outcome,
                Express::HandedBack => {
                    let home = handed.expect("the lane built the job it handed back");
                    return AsyncResult::new(home, Some(self.shared.clone())).get();
                }
                Express::Unavailable => {}
            }
        }
        let slot = Slot::new(task, None, None);
        let (job, home) = self.one_task(task, (trampoline, function), (bytes, fds), timeout, retries, slot);
        self.shared.submit_or_fail(job, false);
        AsyncResult::new(home, Some(self.shared.clone())).get()
    }

    /// The driver's job for one encoded item, and where its handle finds `slot`: inside
    /// the job's submission if the item is small and carries no descriptor, else on its own
    /// (see [`SlotHome`]).
    fn one_task<R: DeserializeOwned + Send + 'static>(
        &self,
        task: &'static str,
        (trampoline, function): (i64, i64),
        (bytes, fds): (ItemBytes, submit::ItemFds),
        timeout: Option<std::time::Duration>,
        retries: u32,
        slot: Slot<R>,
    ) -> (Job, SlotHome<R>) {
        let joint = bytes.len() <= JOINT_SUBMISSION_BYTES && fds.is_empty();
        let item = OneItem { task, trampoline, function, bytes, fds, timeout, retries };
        if joint {
            let sub = Arc::new(item.with_sink(slot));
            (Job::new(sub.clone(), 0, 1), SlotHome::Joint(sub))
        } else {
            let slot = Arc::new(slot);
            (Job::new(Arc::new(item.with_sink(slot.clone())), 0, 1), SlotHome::Alone(slot))
        }
    }

    /// Submits `f(arg)` and returns at once (Python's `apply_async`).
    ///
    /// A submission after [`close`](Pool::close) gives a handle whose `get` is
    /// [`TaskError::Closed`].
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let handles: Vec<_> = (0..4).map(|i| pool.apply_async(square, i)).collect();
    /// let values: Vec<u64> = handles.into_iter().map(|h| h.get().unwrap()).collect();
    /// assert_eq!(values, [0, 1, 4, 9]);
    /// ```
    pub fn apply_async<F, A, R>(&self, f: F, arg: A) -> AsyncResult<R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, arg, TaskOptions::new())
    }

    /// [`apply_async`](Pool::apply_async) with callbacks, a timeout or retries.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{TaskError, TaskOptions};
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let r = pool.apply_async_with(nap, 60_000, TaskOptions::new().timeout(Duration::from_millis(100)));
    /// assert!(matches!(r.get(), Err(TaskError::Timeout { .. })));
    /// assert_eq!(pool.apply(nap, 0).unwrap(), 0); // a fresh worker took over
    /// ```
    pub fn apply_async_with<F, A, R>(&self, f: F, arg: A, opts: TaskOptions<R>) -> AsyncResult<R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let task = std::any::type_name::<F>();
        let function = identity::encode_fn::<F, fn(A) -> R>(f);
        let trampoline = trampoline_offset(unary_trampoline::<F, A, R>);
        let slot = Slot::new(task, opts.callback, opts.error_callback);
        let (bytes, fds) = match Encoder::one(&arg) {
            Ok(v) => v,
            Err(message) => {
                let slot = Arc::new(slot);
                slot.deliver(0, item::Outcome::Failed(TaskError::Codec { task, message }));
                return AsyncResult::new(SlotHome::Alone(slot), None);
            }
        };
        let timeout = opts.timeout.or(self.shared.default_timeout);
        let retries = opts.retries.unwrap_or(self.shared.default_retries);
        let (job, home) = self.one_task(task, (trampoline, function), (bytes, fds), timeout, retries, slot);
        self.shared.submit_or_fail(job, false);
        AsyncResult::new(home, Some(self.shared.clone()))
    }

    /// Applies `f` to every item and waits for all: values in input order, or the first
    /// failed item's error in input order (Python's `map`; chunks of `ceil(n / (4 × workers))`
    /// items).
    ///
    /// ```
    /// fn double(x: u64) -> u64 { x * 2 }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// assert_eq!(pool.map(double, vec![1, 2, 3]).unwrap(), [2, 4, 6]);
    /// ```
    pub fn map<F, A, R, I>(&self, f: F, items: I) -> Result<Vec<R>, TaskError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items).get()
    }

    /// [`map`](Pool::map) with a chunk size, timeout, retries or a progress bar.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Chunksize, MapOptions};
    /// fn double(x: u64) -> u64 { x * 2 }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let opts = MapOptions::new().chunksize(Chunksize::Fixed(5)).timeout(Duration::from_secs(60));
    /// assert_eq!(pool.map_with(double, 0..10, &opts).unwrap()[9], 18);
    /// ```
    pub fn map_with<F, A, R, I>(&self, f: F, items: I, opts: &MapOptions) -> Result<Vec<R>, TaskError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with(f, items, opts).get()
    }

    /// Like [`map`](Pool::map), but returns every item's own outcome: one failure loses
    /// nothing else.
    ///
    /// ```
    /// fn inverse(x: i32) -> i32 { 100 / x }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let all = pool.map_results(inverse, [1, 0, 4]);
    /// assert_eq!(all[0], Ok(100));
    /// assert!(all[1].is_err()); // divided by zero: a panic in the worker
    /// assert_eq!(all[2], Ok(25));
    /// ```
    pub fn map_results<F, A, R, I>(&self, f: F, items: I) -> Vec<Result<R, TaskError>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items).get_all()
    }

    /// Submits a whole map and returns at once (Python's `map_async`).
    ///
    /// ```
    /// fn double(x: u64) -> u64 { x * 2 }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let pending = pool.map_async(double, 0..1000);
    /// // ... the parent does something else meanwhile ...
    /// assert_eq!(pending.get().unwrap().iter().sum::<u64>(), 999 * 1000);
    /// ```
    pub fn map_async<F, A, R, I>(&self, f: F, items: I) -> MapResult<R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with(f, items, &MapOptions::new())
    }

    /// [`map_async`](Pool::map_async) with a chunk size, timeout, retries or a progress bar.
    ///
    /// ```
    /// use multiproc::{Chunksize, MapOptions};
    /// fn double(x: u64) -> u64 { x * 2 }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let opts = MapOptions::new().chunksize(Chunksize::Adaptive);
    /// assert_eq!(pool.map_async_with(double, 0..100, &opts).get().unwrap()[99], 198);
    /// ```
    pub fn map_async_with<F, A, R, I>(&self, f: F, items: I, opts: &MapOptions) -> MapResult<R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let task = std::any::type_name::<F>();
        let function = identity::encode_fn::<F, fn(A) -> R>(f);
        self.map_encoded(task, trampoline_offset(unary_trampoline::<F, A, R>), function, items, opts)
    }

    /// Calls a function of several arguments with each tuple, waits for all (Python's
    /// `starmap`). Functions of 2 to 6 arguments work; see [`StarFn`].
    ///
    /// ```
    /// fn pow(base: u64, exp: u32) -> u64 { base.pow(exp) }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// assert_eq!(pool.starmap(pow, [(2, 10), (3, 2)]).unwrap(), [1024, 9]);
    /// ```
    pub fn starmap<F, Args, I>(&self, f: F, items: I) -> Result<Vec<F::Output>, TaskError>
    where
        F: StarFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.starmap_async(f, items).get()
    }

    /// Submits a whole starmap and returns at once (Python's `starmap_async`).
    ///
    /// ```
    /// fn label(name: String, n: u32) -> String { format!("{name}-{n}") }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let r = pool.starmap_async(label, [("a".to_string(), 1), ("b".to_string(), 2)]);
    /// assert_eq!(r.get().unwrap(), ["a-1", "b-2"]);
    /// ```
    pub fn starmap_async<F, Args, I>(&self, f: F, items: I) -> MapResult<F::Output>
    where
        F: StarFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.starmap_async_with(f, items, &MapOptions::new())
    }

    /// [`starmap_async`](Pool::starmap_async) with options.
    ///
    /// ```
    /// multiproc::init();
    /// fn add(a: u32, b: u32) -> u32 { a + b }
    ///
    /// let pool = multiproc::Pool::new(2)?;
    /// let r = pool.starmap_async_with(add, [(1, 2), (3, 4)], &multiproc::MapOptions::new());
    /// assert_eq!(r.get()?, [3, 7]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn starmap_async_with<F, Args, I>(&self, f: F, items: I, opts: &MapOptions) -> MapResult<F::Output>
    where
        F: StarFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        let task = std::any::type_name::<F>();
        let function = identity::encode_fn::<F, F::Ptr>(f);
        self.map_encoded(task, trampoline_offset(star_trampoline::<F, Args>), function, items, opts)
    }

    fn map_encoded<A, R, I>(
        &self,
        task: &'static str,
        trampoline: i64,
        function: i64,
        items: I,
        opts: &MapOptions,
    ) -> MapResult<R>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let items = items.into_iter();
        let known = encode::exact_len(&items);
        let progress = opts.progress.then_some(known.map(|n| n as u64));
        let collector = Arc::new(Collector::<R>::for_map(task, known.unwrap_or(0), progress));
        let encoding = encode::MapEncoding {
            shared: &self.shared,
            task,
            trampoline,
            function,
            timeout: opts.timeout.or(self.shared.default_timeout),
            retries: opts.retries.unwrap_or(self.shared.default_retries),
            sink: collector.clone(),
            chunksize: opts.chunksize,
            workers: self.processes,
        };
        let n = encoding.run(items, known);
        collector.set_total(n);
        MapResult::new(collector, self.shared.clone(), n)
    }

    /// Applies `f` lazily, yielding outcomes in input order (Python's `imap`, one item
    /// per task). The input is pulled through a bounded window; see [`IMapIter`].
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// for (i, r) in pool.imap(square, 0..5).enumerate() {
    ///     assert_eq!(r.unwrap(), (i * i) as u64); // input order
    /// }
    /// ```
    pub fn imap<'a, F, A, R, I>(&self, f: F, items: I) -> IMapIter<'a, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        self.imap_with(f, items, &MapOptions::new())
    }

    /// [`imap`](Pool::imap) with options (chunk size, window, timeout, retries, progress).
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(2)?;
    /// let it = pool.imap_with(square, 0..4u64, &multiproc::MapOptions::new().window(2));
    /// assert_eq!(it.collect::<Result<Vec<_>, _>>()?, [0, 1, 4, 9]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap_with<'a, F, A, R, I>(&self, f: F, items: I, opts: &MapOptions) -> IMapIter<'a, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        self.lazy_map(f, items, opts, true)
    }

    /// Applies `f` lazily, yielding outcomes as they complete (Python's `imap_unordered`).
    ///
    /// ```
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let mut got: Vec<u64> = pool.imap_unordered(nap, [30, 1, 2]).map(Result::unwrap).collect();
    /// got.sort();
    /// assert_eq!(got, [1, 2, 30]);
    /// ```
    pub fn imap_unordered<'a, F, A, R, I>(&self, f: F, items: I) -> IMapIter<'a, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        self.imap_unordered_with(f, items, &MapOptions::new())
    }

    /// [`imap_unordered`](Pool::imap_unordered) with options.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(2)?;
    /// let it = pool.imap_unordered_with(square, 0..4u64, &multiproc::MapOptions::new());
    /// let mut v = it.collect::<Result<Vec<_>, _>>()?;
    /// v.sort();
    /// assert_eq!(v, [0, 1, 4, 9]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap_unordered_with<'a, F, A, R, I>(&self, f: F, items: I, opts: &MapOptions) -> IMapIter<'a, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        self.lazy_map(f, items, opts, false)
    }

    fn lazy_map<'a, F, A, R, I>(&self, f: F, items: I, opts: &MapOptions, ordered: bool) -> IMapIter<'a, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        let task = std::any::type_name::<F>();
        let (chunking, window) = chunk::imap_chunking(opts.chunksize, opts.window, self.processes);
        let spec = FeedSpec {
            task,
            trampoline: trampoline_offset(unary_trampoline::<F, A, R>),
            function: identity::encode_fn::<F, fn(A) -> R>(f),
            chunking,
            timeout: opts.timeout.or(self.shared.default_timeout),
            retries: opts.retries.unwrap_or(self.shared.default_retries),
        };
        let mut input = items.into_iter();
        let feed: map::Feed<'a> = Box::new(move |enc: &mut Encoder| input.next().map(|a| enc.push(&a)));
        let progress = opts.progress.then_some(None);
        let collector = Arc::new(Collector::<R>::new(task, ordered, progress));
        IMapIter::new(collector, self.shared.clone(), spec, feed, window)
    }

    /// Stops accepting work; tasks already submitted still run (Python's `close`).
    /// Later submissions fail with [`TaskError::Closed`].
    ///
    /// ```
    /// use multiproc::TaskError;
    /// fn double(x: u64) -> u64 { x * 2 }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let before = pool.apply_async(double, 1);
    /// pool.close();
    /// assert!(matches!(pool.apply(double, 2), Err(TaskError::Closed { .. })));
    /// pool.join().unwrap();
    /// assert_eq!(before.get().unwrap(), 2);
    /// ```
    pub fn close(&self) {
        self.shared.close();
    }

    /// Waits until every submitted task has run and every worker has exited (Python's
    /// `join`). Like Python, it is an error ([`PoolError::StillRunning`]) before
    /// [`close`](Pool::close) or [`terminate`](Pool::terminate), and inside one of the
    /// pool's callbacks ([`PoolError::JoinInCallback`]), whose thread finishes the work.
    ///
    /// ```
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// assert!(pool.join().is_err()); // still running
    /// pool.close();
    /// pool.join().unwrap();
    /// ```
    pub fn join(&self) -> Result<(), PoolError> {
        if !self.shared.stopping() {
            return Err(PoolError::StillRunning);
        }
        if self.shared.waiting_would_deadlock() {
            return Err(PoolError::JoinInCallback);
        }
        self.shared.join();
        Ok(())
    }

    /// Kills every worker now, reaps them, and fails every unfinished task with
    /// [`TaskError::Terminated`] (Python's `terminate`). Returns once no worker is left;
    /// inside one of the pool's callbacks (and so when a callback drops the last handle)
    /// it returns at once, and the pool stops as soon as the callback returns.
    ///
    /// ```
    /// use multiproc::TaskError;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let r = pool.apply_async(nap, 60_000);
    /// pool.terminate();
    /// assert!(matches!(r.get(), Err(TaskError::Terminated { .. })));
    /// ```
    pub fn terminate(&self) {
        self.shared.terminate();
    }
}

impl Drop for Pool {
    /// Terminates the workers and reaps them (after `join`, there is nothing left to do).
    fn drop(&mut self) {
        self.terminate();
    }
}

/// One encoded item, all a single-item submission needs but its sink.
struct OneItem {
    task: &'static str,
    trampoline: i64,
    function: i64,
    bytes: ItemBytes,
    fds: submit::ItemFds,
    timeout: Option<std::time::Duration>,
    retries: u32,
}

impl OneItem {
    fn with_sink<S>(self, sink: S) -> Submission<S> {
        Submission {
            task: self.task,
            trampoline: self.trampoline,
            function: self.function,
            bytes: self.bytes,
            index: submit::ItemIndex::boxed(Vec::new(), self.fds),
            base: 0,
            chunking: Chunking::Fixed(1),
            timeout: self.timeout,
            retries: self.retries,
            sink,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_send_and_sync_where_they_should_be() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<super::Pool>();
        send::<super::AsyncResult<Vec<u8>>>();
        send::<super::MapResult<String>>();
        send::<super::TaskError>();
    }
}
