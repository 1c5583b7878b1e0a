//! The map family's handles: `MapResult` (all results at once) and `IMapIter` (one by
//! one, pulling its input lazily through a bounded window).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::chunk::Chunking;
use super::engine::Shared;
use super::error::TaskError;
use super::item::{Decoded, Delivered, Items, Outcome, decode_item, decode_values};
use super::submit::{Encoder, Job, Sink, Submission, Tally};

/// One item's place in an ordered collector. Small (an error is boxed), so a large
/// map's slots take little fresh memory.
enum Cell<R> {
    Empty,
    Value(R),
    Failed(Box<TaskError>),
}

impl<R> Cell<R> {
    fn from_result(r: Result<R, TaskError>) -> Self {
        match r {
            Ok(v) => Cell::Value(v),
            Err(e) => Cell::Failed(Box::new(e)),
        }
    }

    fn is_filled(&self) -> bool {
        !matches!(self, Cell::Empty)
    }

    fn into_option(self) -> Option<Result<R, TaskError>> {
        match self {
            Cell::Empty => None,
            Cell::Value(v) => Some(Ok(v)),
            Cell::Failed(e) => Some(Err(*e)),
        }
    }
}

/// A run of consecutive items' outcomes.
enum Run<R> {
    /// Every item gave a value.
    Values(Vec<R>),
    /// Some failed.
    Cells(Vec<Cell<R>>),
}

impl<R> Run<R> {
    fn len(&self) -> usize {
        match self {
            Run::Values(v) => v.len(),
            Run::Cells(c) => c.len(),
        }
    }
}

/// A whole map's outcomes, as runs of consecutive items by their first index. A result
/// chunk decodes into a vector of values that continues the run before it, and a run
/// that follows is appended to it, so a map whose items all succeed ends as one vector
/// that is handed over as it is: no slot per item, no copy at the end.
struct Runs<R> {
    by_first: BTreeMap<usize, Run<R>>,
    /// The run of values continued last, kept out of the map (empty: none): results
    /// that come in order, nearly all of them, continue it without a lookup.
    open: Vec<R>,
    open_first: usize,
    /// The map's length when known: the run that starts at item 0 reserves room for all.
    expected: usize,
}

impl<R> Runs<R> {
    fn new(expected: usize) -> Self {
        Runs { by_first: BTreeMap::new(), open: Vec::new(), open_first: 0, expected }
    }

    /// Whether one of items `first..first + len` has its outcome already.
    fn overlaps(&self, first: usize, len: usize) -> bool {
        if !self.open.is_empty() && first < self.open_first + self.open.len() && self.open_first < first + len {
            return true;
        }
        if self.by_first.is_empty() {
            return false;
        }
        if let Some((&start, run)) = self.by_first.range(..=first).next_back()
            && start + run.len() > first
        {
            return true;
        }
        len > 1 && self.by_first.range(first + 1..first + len).next().is_some()
    }

    /// The run of values that ends at `index`, taken out to be continued, or a new one
    /// with room for `room` values; with where it starts.
    fn continue_at(&mut self, index: usize, room: usize) -> (usize, Vec<R>) {
        if !self.open.is_empty() && self.open_first + self.open.len() == index {
            return (self.open_first, std::mem::take(&mut self.open));
        }
        if let Some((&start, Run::Values(v))) = self.by_first.range(..index).next_back()
            && start + v.len() == index
            && let Some(Run::Values(v)) = self.by_first.remove(&start)
        {
            return (start, v);
        }
        let room = if index == 0 { room.max(self.expected) } else { room };
        (index, Vec::with_capacity(room))
    }

    /// Puts a run of values back, with the run of values that follows it appended; it
    /// becomes the open run.
    fn put_values(&mut self, first: usize, mut values: Vec<R>) {
        if values.is_empty() {
            return;
        }
        let end = first + values.len();
        if !self.open.is_empty() && self.open_first == end {
            values.append(&mut self.open);
        } else if matches!(self.by_first.get(&end), Some(Run::Values(_)))
            && let Some(Run::Values(mut next)) = self.by_first.remove(&end)
        {
            values.append(&mut next);
        }
        self.settle();
        self.open_first = first;
        self.open = values;
    }

    /// Moves the open run into the map (before the runs are read).
    fn settle(&mut self) {
        if !self.open.is_empty() {
            self.by_first.insert(self.open_first, Run::Values(std::mem::take(&mut self.open)));
        }
    }

    /// Stores one outcome; `false` if the item had one already.
    fn store(&mut self, index: usize, r: Result<R, TaskError>) -> bool {
        if self.overlaps(index, 1) {
            return false;
        }
        match r {
            Ok(v) => {
                let (start, mut values) = self.continue_at(index, 1);
                values.push(v);
                self.put_values(start, values);
            }
            Err(e) => {
                self.by_first.insert(index, Run::Cells(vec![Cell::Failed(Box::new(e))]));
            }
        }
        true
    }

    /// Every outcome of items `0..len` in order (by reference); `None` for one missing.
    /// Call [`settle`](Runs::settle) first.
    fn for_each(&self, len: usize, mut each: impl FnMut(Option<Result<&R, &TaskError>>) -> bool) {
        let mut next = 0;
        for (&start, run) in &self.by_first {
            for _ in next..start.min(len) {
                if !each(None) {
                    return;
                }
            }
            let go = match run {
                Run::Values(v) => v.iter().all(|v| each(Some(Ok(v)))),
                Run::Cells(c) => c.iter().all(|c| {
                    each(match c {
                        Cell::Empty => None,
                        Cell::Value(v) => Some(Ok(v)),
                        Cell::Failed(e) => Some(Err(e)),
                    })
                }),
            };
            if !go {
                return;
            }
            next = start + run.len();
        }
        for _ in next..len {
            if !each(None) {
                return;
            }
        }
    }

    /// Every outcome of items `0..len`, in order; `missing` for items that have none.
    fn take_all(&mut self, len: usize, missing: impl Fn() -> TaskError) -> Vec<Result<R, TaskError>> {
        self.settle();
        let mut out = Vec::with_capacity(len);
        for (start, run) in std::mem::take(&mut self.by_first) {
            while out.len() < start.min(len) {
                out.push(Err(missing()));
            }
            match run {
                Run::Values(v) => out.extend(v.into_iter().map(Ok)),
                Run::Cells(c) => out.extend(c.into_iter().map(|c| c.into_option().unwrap_or_else(|| Err(missing())))),
            }
        }
        while out.len() < len {
            out.push(Err(missing()));
        }
        out
    }

    /// The values of items `0..len` in order, or the first error (`missing` for an item
    /// that has no outcome). When every item gave a value this is usually the one run,
    /// as it is.
    fn take_values(&mut self, len: usize, missing: impl Fn() -> TaskError) -> Result<Vec<R>, TaskError> {
        self.settle();
        let runs = std::mem::take(&mut self.by_first);
        let mut out: Vec<R> = Vec::new();
        for (start, run) in runs {
            if start != out.len() {
                return Err(missing());
            }
            match run {
                Run::Values(mut v) if out.is_empty() => out = std::mem::take(&mut v),
                Run::Values(mut v) => out.append(&mut v),
                Run::Cells(c) => {
                    for cell in c {
                        match cell {
                            Cell::Value(v) => out.push(v),
                            Cell::Failed(e) => return Err(*e),
                            Cell::Empty => return Err(missing()),
                        }
                    }
                }
            }
        }
        if out.len() < len {
            return Err(missing());
        }
        Ok(out)
    }
}

struct CollectState<R> {
    /// A whole map's outcomes (for `MapResult`).
    runs: Runs<R>,
    /// An ordered iterator's, in input order: slot `i` is item `head + i`.
    slots: VecDeque<Cell<R>>,
    head: usize,
    /// In completion order (for `imap_unordered`).
    done: VecDeque<Result<R, TaskError>>,
    delivered: usize,
    /// For a whole map: how many items; its waiter only needs waking at the last one.
    total: Option<usize>,
    /// Threads blocked in `wait_until`.
    waiters: usize,
    waker: Option<Waker>,
    /// Python's `map_async` callbacks, set by [`MapResult::then`]: run once, when the
    /// last item ends.
    hook: Option<CompletionHook<R>>,
    /// The completion callback was taken and has not returned yet: as in Python, the map
    /// does not count as ready until it has.
    hook_running: bool,
}

/// Runs under the collector's lock when the map has ended, to take a snapshot of the
/// outcome; returns the callback to run once the lock is released (so a callback may
/// look at its `MapResult` without deadlocking).
type CompletionHook<R> = Box<dyn FnOnce(&CollectState<R>) -> Box<dyn FnOnce() + Send> + Send>;

impl<R> CollectState<R> {
    /// The completion callback, if the map has just ended and one is registered.
    fn take_finished_hook(&mut self) -> Option<Box<dyn FnOnce() + Send>> {
        if self.total.is_none_or(|t| self.delivered < t) {
            return None;
        }
        let hook = self.hook.take()?;
        self.runs.settle();
        self.hook_running = true;
        Some(hook(self))
    }

    /// Whether all `len` items ended and the completion callback, if any, has run.
    fn complete(&self, len: usize) -> bool {
        self.delivered >= len && !self.hook_running
    }
}

/// Runs a completion callback, reporting a panic instead of passing it on: the driver
/// thread, where callbacks run, must go on.
fn run_hook(task: &'static str, hook: Option<Box<dyn FnOnce() + Send>>) {
    let Some(hook) = hook else { return };
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)) {
        let what = super::guard::panic_message(p.as_ref());
        eprintln!("multiproc pool: a map callback of task `{task}` panicked: {what} (the pool goes on)");
    }
}

/// Collects the outcomes of a map's items; shared by the driver and the handle.
pub(crate) struct Collector<R> {
    task: &'static str,
    ordered: bool,
    /// For a whole map: outcomes go to `runs`.
    whole: bool,
    state: Mutex<CollectState<R>>,
    cond: Condvar,
    cancelled: AtomicBool,
    #[cfg(feature = "progress")]
    bar: Option<indicatif::ProgressBar>,
}

impl<R> Collector<R> {
    /// For an iterator (`imap`, `imap_unordered`).
    pub(crate) fn new(task: &'static str, ordered: bool, progress: Option<Option<u64>>) -> Self {
        Self::make(task, ordered, None, progress)
    }

    /// For a whole map of `expected` items (0 if not known yet).
    pub(crate) fn for_map(task: &'static str, expected: usize, progress: Option<Option<u64>>) -> Self {
        Self::make(task, true, Some(expected), progress)
    }

    fn make(task: &'static str, ordered: bool, whole: Option<usize>, progress: Option<Option<u64>>) -> Self {
        #[cfg(not(feature = "progress"))]
        let _ = progress;
        Collector {
            task,
            ordered,
            whole: whole.is_some(),
            state: Mutex::new(CollectState {
                runs: Runs::new(whole.unwrap_or(0)),
                slots: VecDeque::new(),
                head: 0,
                done: VecDeque::new(),
                delivered: 0,
                total: None,
                waiters: 0,
                waker: None,
                hook: None,
                hook_running: false,
            }),
            cond: Condvar::new(),
            cancelled: AtomicBool::new(false),
            #[cfg(feature = "progress")]
            bar: progress.map(|len| match len {
                Some(n) => indicatif::ProgressBar::new(n),
                None => indicatif::ProgressBar::new_spinner(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CollectState<R>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the completion callback taken under the lock (if any), then lets the map count
    /// as ready: waiters wake only after the callback has returned.
    fn finish_hook(&self, hook: Option<Box<dyn FnOnce() + Send>>) {
        if hook.is_none() {
            return;
        }
        run_hook(self.task, hook);
        let waker = {
            let mut st = self.lock();
            st.hook_running = false;
            self.wake_locked(&mut st)
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Records the outcome of item `index` (also used for items that never left the parent).
    pub(crate) fn put(&self, index: usize, r: Result<R, TaskError>) {
        let (waker, hook) = {
            let mut st = self.lock();
            match self.store(&mut st, index, r) {
                None => return,
                Some(true) => (self.wake_locked(&mut st), st.take_finished_hook()),
                Some(false) => (None, None),
            }
        };
        self.finish_hook(hook);
        #[cfg(feature = "progress")]
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Stores one outcome under the lock. `None` if the item had one already, else
    /// whether what a waiter waits for may have come: the whole map, the next item in
    /// order, or any item for an unordered iterator.
    fn store(&self, st: &mut CollectState<R>, index: usize, r: Result<R, TaskError>) -> Option<bool> {
        if self.whole {
            if !st.runs.store(index, r) {
                return None;
            }
        } else if self.ordered {
            let pos = index.checked_sub(st.head)?;
            if st.slots.len() <= pos {
                st.slots.resize_with(pos + 1, || Cell::Empty);
            }
            if st.slots[pos].is_filled() {
                return None;
            }
            st.slots[pos] = Cell::from_result(r);
        } else {
            st.done.push_back(r);
        }
        st.delivered += 1;
        Some(match st.total {
            Some(t) => st.delivered >= t,
            None => !self.ordered || index == st.head,
        })
    }

    /// Wakes the threads waiting; returns the future's waker, to wake once unlocked.
    fn wake_locked(&self, st: &mut CollectState<R>) -> Option<Waker> {
        if st.waiters > 0 {
            self.cond.notify_all();
        }
        st.waker.take()
    }

    /// One result item, decoded: a value, or its error (counted in `tally`).
    #[inline]
    fn decode(&self, task: &'static str, item: &[u8], tally: &mut Tally) -> Result<R, TaskError>
    where
        R: DeserializeOwned,
    {
        match decode_item::<R>(task, item) {
            Decoded::Value(v) => Ok(v),
            Decoded::Failed { error, delivered, panicked } => {
                tally.add(delivered, panicked);
                Err(error)
            }
        }
    }

    /// A whole map's result chunk straight onto the runs: values continue the run
    /// before them; a failure keeps its place in a run of its own. Returns how many
    /// values decoded and whether the map has now ended.
    fn store_run(
        &self,
        st: &mut CollectState<R>,
        task: &'static str,
        first: usize,
        items: &mut Items<'_>,
        count: u32,
        tally: &mut Tally,
    ) -> (u64, bool)
    where
        R: DeserializeOwned,
    {
        let mut failed = 0u64;
        let (mut start, mut run) = st.runs.continue_at(first, count as usize);
        while let Some(not) = decode_values(task, items, &mut run) {
            failed += 1;
            tally.add(not.delivered, not.panicked);
            let index = first + not.at;
            st.runs.put_values(start, std::mem::take(&mut run));
            st.runs.store(index, Err(not.error));
            start = index + 1;
        }
        st.runs.put_values(start, run);
        st.delivered += items.taken as usize;
        (items.taken as u64 - failed, st.total.is_some_and(|t| st.delivered >= t))
    }

    /// An iterator's result chunk, item by item. Returns how many values decoded, how
    /// many items were stored, and whether a waiter may want one of them.
    fn store_each(
        &self,
        st: &mut CollectState<R>,
        task: &'static str,
        first: usize,
        items: &mut Items<'_>,
        tally: &mut Tally,
    ) -> (u64, u64, bool)
    where
        R: DeserializeOwned,
    {
        let (mut values, mut stored, mut wanted) = (0u64, 0u64, false);
        for (k, item) in items.by_ref().enumerate() {
            let r = self.decode(task, item, tally);
            values += r.is_ok() as u64;
            if let Some(w) = self.store(st, first + k, r) {
                stored += 1;
                wanted |= w;
            }
        }
        (values, stored, wanted)
    }

    /// For a whole map: the number of items, once known; wakes a waiter if all came.
    pub(crate) fn set_total(&self, n: usize) {
        let waker;
        let hook;
        {
            let mut st = self.lock();
            st.total = Some(n);
            if st.delivered < n {
                return;
            }
            if st.waiters > 0 {
                self.cond.notify_all();
            }
            waker = st.waker.take();
            hook = st.take_finished_hook();
        }
        self.finish_hook(hook);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Waits until `ok` or `deadline` (`None` after the deadline). `shared` is the pool:
    /// on its driver thread (a callback) nothing is delivered while this waits, so it
    /// answers `None` at once where it would wait.
    fn wait_until(
        &self,
        deadline: Option<Instant>,
        shared: &Shared,
        ok: impl Fn(&CollectState<R>) -> bool,
    ) -> Option<MutexGuard<'_, CollectState<R>>> {
        let mut st = self.lock();
        if !ok(&st) && shared.waiting_would_deadlock() {
            return None;
        }
        while !ok(&st) {
            let left = match deadline {
                None => None,
                Some(d) => Some(d.checked_duration_since(Instant::now())?),
            };
            st.waiters += 1;
            st = match left {
                None => self.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(left) => self.cond.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0,
            };
            st.waiters -= 1;
        }
        Some(st)
    }

    /// A whole map's values, as [`MapResult::get`] takes them (for the benchmarks).
    #[cfg(feature = "bench-internals")]
    pub(crate) fn take_values(&self, len: usize) -> Result<Vec<R>, TaskError> {
        let task = self.task;
        self.lock().runs.take_values(len, || TaskError::Cancelled { task })
    }

    fn cancel(&self, shared: &Shared) {
        self.cancelled.store(true, Ordering::Relaxed);
        shared.request_cancel();
    }

    #[cfg(feature = "progress")]
    fn finish_bar(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for Collector<R> {
    fn deliver(&self, index: usize, outcome: Outcome<'_>) -> Delivered {
        let (r, d) = outcome.decode::<R>(self.task);
        self.put(index, r);
        d
    }

    /// A whole result chunk under one lock, with at most one wake-up; values decode
    /// straight into their slots.
    fn deliver_chunk(&self, task: &'static str, first: usize, body: &[u8], count: u32, tally: &mut Tally) -> u32 {
        let mut items = Items::new(body, count);
        let (values, stored, waker, hook) = {
            let mut st = self.lock();
            let (values, stored, wanted) = if self.whole && !st.runs.overlaps(first, count as usize) {
                let (values, ended) = self.store_run(&mut st, task, first, &mut items, count, tally);
                (values, items.taken as u64, ended)
            } else {
                self.store_each(&mut st, task, first, &mut items, tally)
            };
            let (waker, hook) =
                if wanted { (self.wake_locked(&mut st), st.take_finished_hook()) } else { (None, None) };
            (values, stored, waker, hook)
        };
        tally.values(values);
        self.finish_hook(hook);
        #[cfg(feature = "progress")]
        if let Some(bar) = &self.bar {
            bar.inc(stored);
        }
        #[cfg(not(feature = "progress"))]
        let _ = stored;
        if let Some(w) = waker {
            w.wake();
        }
        items.taken
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// The result of [`Pool::map_async`](crate::Pool::map_async) and
/// [`starmap_async`](crate::Pool::starmap_async): every item's outcome, in input order.
///
/// [`get`](MapResult::get) gives all values or the first error (as Python's `map`);
/// [`get_all`](MapResult::get_all) gives every item's own outcome, so one failure loses
/// nothing else. It is also a [`Future`] of `get`'s result.
///
/// ```
/// fn double(x: u64) -> u64 { x * 2 }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2).unwrap();
/// let m = pool.map_async(double, 0..5);
/// assert_eq!(m.get().unwrap(), vec![0, 2, 4, 6, 8]);
/// ```
pub struct MapResult<R> {
    collector: Arc<Collector<R>>,
    shared: Arc<Shared>,
    len: usize,
    /// Whether dropping this handle cancels the map ([`MapResult::abort_on_drop`]).
    abort_on_drop: bool,
}

impl<R> std::fmt::Debug for MapResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapResult").field("task", &self.collector.task).field("len", &self.len).finish()
    }
}

impl<R> MapResult<R> {
    pub(crate) fn new(collector: Arc<Collector<R>>, shared: Arc<Shared>, len: usize) -> Self {
        MapResult { collector, shared, len, abort_on_drop: false }
    }

    /// How many items the map has.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(2)?;
    /// let r = pool.map_async(square, 0..3u64);
    /// assert_eq!(r.len(), 3);
    /// assert!(!r.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map has no items.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(1)?;
    /// assert!(pool.map_async(square, 0..0u64).is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Waits for every item; returns the values in input order, or the first error in
    /// input order.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(2)?;
    /// assert_eq!(pool.map_async(square, 0..3u64).get()?, [0, 1, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(self) -> Result<Vec<R>, TaskError> {
        self.wait();
        self.take_values()
    }

    /// Waits for every item; returns each item's own outcome, in input order.
    ///
    /// ```
    /// fn picky(x: u32) -> u32 { assert!(x != 1, "no ones"); x }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let all = pool.map_async(picky, [0, 1, 2]).get_all();
    /// assert_eq!(all[0], Ok(0));
    /// assert!(all[1].is_err());
    /// assert_eq!(all[2], Ok(2));
    /// ```
    pub fn get_all(self) -> Vec<Result<R, TaskError>> {
        self.wait();
        self.take_all()
    }

    fn take_all(&self) -> Vec<Result<R, TaskError>> {
        let missing = self.missing();
        #[cfg(feature = "progress")]
        self.collector.finish_bar();
        self.collector.lock().runs.take_all(self.len, missing)
    }

    /// What an item with no outcome gets when the results are taken: it was cancelled, or,
    /// inside a callback of this pool, its result could not be waited for.
    fn missing(&self) -> impl Fn() -> TaskError + use<R> {
        let task = self.collector.task;
        let in_callback = !self.ready() && self.shared.waiting_would_deadlock();
        move || if in_callback { TaskError::WaitInCallback { task } } else { TaskError::Cancelled { task } }
    }

    /// The values in input order, or the first error: when every item gave a value,
    /// usually the one vector the results were decoded into.
    fn take_values(&self) -> Result<Vec<R>, TaskError> {
        let missing = self.missing();
        #[cfg(feature = "progress")]
        self.collector.finish_bar();
        self.collector.lock().runs.take_values(self.len, missing)
    }

    /// Whether every item has ended.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(2)?;
    /// let r = pool.map_async(square, 0..3u64);
    /// r.wait();
    /// assert!(r.ready());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ready(&self) -> bool {
        self.collector.lock().complete(self.len)
    }

    /// `Some(true)` when every item gave a value, `Some(false)` when one failed, `None`
    /// while items run.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(2)?;
    /// let r = pool.map_async(square, 0..3u64);
    /// r.wait();
    /// assert_eq!(r.successful(), Some(true));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn successful(&self) -> Option<bool> {
        let mut st = self.collector.lock();
        if !st.complete(self.len) {
            return None;
        }
        st.runs.settle();
        let mut all = true;
        st.runs.for_each(self.len, |o| {
            all = matches!(o, Some(Ok(_)));
            all
        });
        Some(all)
    }

    /// Waits until every item has ended.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(2)?;
    /// let r = pool.map_async(square, 0..3u64);
    /// r.wait();
    /// assert!(r.ready());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&self) {
        let len = self.len;
        drop(self.collector.wait_until(None, &self.shared, |st| st.complete(len)));
    }

    /// Waits at most `timeout`; returns whether every item has ended.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// use std::time::Duration;
    /// let pool = multiproc::Pool::new(2)?;
    /// let r = pool.map_async(square, 0..3u64);
    /// assert!(r.wait_timeout(Duration::from_secs(30)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let len = self.len;
        self.collector.wait_until(Instant::now().checked_add(timeout), &self.shared, |st| st.complete(len)).is_some()
    }

    /// Cancels every item not yet ended (running ones have their workers replaced).
    ///
    /// ```
    /// multiproc::init();
    /// fn forever(_: u32) { loop { std::thread::park() } }
    ///
    /// let pool = multiproc::Pool::new(1)?;
    /// let r = pool.map_async(forever, 0..2u32);
    /// r.cancel(); // its running items' workers are killed and replaced
    /// assert!(r.get().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self) {
        self.collector.cancel(&self.shared);
    }

    /// Makes dropping this handle [`cancel`](MapResult::cancel) the map if it has not
    /// ended, as [`AsyncResult::abort_on_drop`](crate::AsyncResult::abort_on_drop) does
    /// for one task: the workers running its items are freed at once.
    ///
    /// ```
    /// fn double(x: u64) -> u64 { x * 2 }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let m = pool.map_async(double, 0..4).abort_on_drop();
    /// assert_eq!(m.get().unwrap(), [0, 2, 4, 6]); // ended: the drop cancels nothing
    /// ```
    pub fn abort_on_drop(mut self) -> Self {
        self.abort_on_drop = true;
        self
    }

    /// Python's `map_async(..., callback, error_callback)`: when every item has ended,
    /// `callback` gets the values in input order, or `error_callback` the first error in
    /// input order. They run once, in this (the parent) process — on the pool's driver
    /// thread, or on this thread if the map has already ended — so they must not block.
    /// A panicking callback is reported on stderr and the pool goes on. The values stay
    /// in the `MapResult` for [`get`](MapResult::get) (hence `R: Clone`).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// fn double(x: u64) -> u64 { x * 2 }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// let m = pool.map_async(double, 0..4).then(
    ///     move |values: &[u64]| tx.send(values.iter().sum::<u64>()).unwrap(),
    ///     |e| panic!("{e}"),
    /// );
    /// assert_eq!(rx.recv().unwrap(), 12);
    /// assert_eq!(m.get().unwrap(), [0, 2, 4, 6]);
    /// ```
    pub fn then(
        self,
        callback: impl FnOnce(&[R]) + Send + 'static,
        error_callback: impl FnOnce(&TaskError) + Send + 'static,
    ) -> Self
    where
        R: Clone + Send + 'static,
    {
        let task = self.collector.task;
        let len = self.len;
        let hook: CompletionHook<R> = Box::new(move |st| {
            let mut first_error = None;
            let mut values = Vec::with_capacity(len);
            st.runs.for_each(len, |o| match o {
                Some(Ok(v)) => {
                    values.push(v.clone());
                    true
                }
                Some(Err(e)) => {
                    first_error = Some(e.clone());
                    false
                }
                None => {
                    first_error = Some(TaskError::Cancelled { task });
                    false
                }
            });
            match first_error {
                None => Box::new(move || callback(&values)),
                Some(e) => Box::new(move || error_callback(&e)),
            }
        });
        let ready_now = {
            let mut st = self.collector.lock();
            st.hook = Some(hook);
            st.take_finished_hook()
        };
        self.collector.finish_hook(ready_now);
        self
    }
}

impl<R> Drop for MapResult<R> {
    fn drop(&mut self) {
        if self.abort_on_drop && !self.ready() {
            self.cancel();
        }
    }
}

impl<R> Future for MapResult<R> {
    type Output = Result<Vec<R>, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        {
            let mut st = self.collector.lock();
            if !st.complete(self.len) && !self.shared.waiting_would_deadlock() {
                match &st.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => st.waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
        }
        Poll::Ready(self.take_values())
    }
}

/// Pulls and encodes the next input item; `None` at the end, `Some(Err)` for an item
/// that did not encode.
pub(crate) type Feed<'a> = Box<dyn FnMut(&mut Encoder) -> Option<Result<(), String>> + 'a>;

/// What a lazily fed map sends with each batch.
pub(crate) struct FeedSpec {
    pub(crate) task: &'static str,
    pub(crate) trampoline: i64,
    pub(crate) function: i64,
    pub(crate) chunking: Chunking,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: u32,
}

/// The iterator of [`Pool::imap`](crate::Pool::imap) and
/// [`imap_unordered`](crate::Pool::imap_unordered): yields each item's outcome, in input
/// order or in completion order.
///
/// It pulls its input lazily: at most a window of items (default: 4 × workers ×
/// chunksize, at least 32) is in the pool or waiting to be consumed, so an endless input
/// works in bounded memory. The input is read by the thread that iterates.
/// Consume it before [`Pool::join`](crate::Pool::join): items not yet sent when the
/// pool has shut down come back as [`TaskError::Closed`].
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2).unwrap();
/// let firsts: Vec<u64> = pool.imap(square, 1..).take(4).map(Result::unwrap).collect();
/// assert_eq!(firsts, [1, 4, 9, 16]);
/// ```
pub struct IMapIter<'a, R> {
    collector: Arc<Collector<R>>,
    shared: Arc<Shared>,
    spec: FeedSpec,
    feed: Feed<'a>,
    window: usize,
    /// Items pulled from the input so far (the next item's index).
    pulled: usize,
    /// Items handed to the caller so far.
    yielded: usize,
    exhausted: bool,
    /// Whether dropping the iterator cancels its items ([`IMapIter::abort_on_drop`]).
    abort_on_drop: bool,
    _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for IMapIter<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMapIter")
            .field("task", &self.collector.task)
            .field("ordered", &self.collector.ordered)
            .field("window", &self.window)
            .field("pulled", &self.pulled)
            .field("yielded", &self.yielded)
            .finish()
    }
}

impl<'a, R: DeserializeOwned + Send + 'static> IMapIter<'a, R> {
    pub(crate) fn new(
        collector: Arc<Collector<R>>,
        shared: Arc<Shared>,
        spec: FeedSpec,
        feed: Feed<'a>,
        window: usize,
    ) -> Self {
        IMapIter {
            collector,
            shared,
            spec,
            feed,
            window: window.max(1),
            pulled: 0,
            yielded: 0,
            exhausted: false,
            abort_on_drop: false,
            _r: PhantomData,
        }
    }

    /// Tops the window up, in batches of at least half a window (one submission each).
    fn refill(&mut self) {
        let outstanding = self.pulled - self.yielded;
        if self.exhausted || outstanding > self.window / 2 {
            return;
        }
        let mut enc = Encoder::new();
        let mut base = self.pulled;
        while self.pulled - self.yielded < self.window {
            match (self.feed)(&mut enc) {
                None => {
                    self.exhausted = true;
                    break;
                }
                Some(Ok(())) => self.pulled += 1,
                Some(Err(message)) => {
                    // The items before it go as one batch, so indices stay in step.
                    let before = std::mem::replace(&mut enc, Encoder::new());
                    self.send(before, base);
                    let task = self.spec.task;
                    self.collector.put(self.pulled, Err(TaskError::Codec { task, message }));
                    self.pulled += 1;
                    base = self.pulled;
                }
            }
        }
        self.send(enc, base);
    }

    fn send(&mut self, enc: Encoder, base: usize) {
        let n = enc.len();
        if n == 0 {
            return;
        }
        let (bytes, index) = enc.finish();
        let sink = self.collector.clone();
        let sub = Arc::new(Submission {
            task: self.spec.task,
            trampoline: self.spec.trampoline,
            function: self.spec.function,
            bytes: bytes.into(),
            index,
            base,
            chunking: self.spec.chunking,
            timeout: self.spec.timeout,
            retries: self.spec.retries,
            sink,
        });
        let job = Job::new(sub, 0, n as u32);
        self.shared.submit_or_fail(job, true);
    }

    /// Makes dropping the iterator before its end cancel the items submitted and not yet
    /// consumed (a worker running one is killed and replaced), so a consumer that stops
    /// early, or async code that drops it, leaves no worker busy for nothing.
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let first = pool.imap(square, 1..).abort_on_drop().next().unwrap().unwrap();
    /// assert_eq!(first, 1); // the rest of the window was cancelled
    /// ```
    pub fn abort_on_drop(mut self) -> Self {
        self.abort_on_drop = true;
        self
    }

    /// Like `next`, but waits at most `timeout` for the next outcome; `Some(Err(WaitTimeout))`
    /// if none came (the iteration can go on).
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// use std::time::Duration;
    /// let pool = multiproc::Pool::new(1)?;
    /// let mut it = pool.imap(square, [3u64]);
    /// assert_eq!(it.next_timeout(Duration::from_secs(30)).transpose()?, Some(9));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R, TaskError>> {
        self.next_until(Instant::now().checked_add(timeout), timeout)
    }

    fn next_until(&mut self, deadline: Option<Instant>, timeout: Duration) -> Option<Result<R, TaskError>> {
        self.refill();
        if self.exhausted && self.yielded == self.pulled {
            #[cfg(feature = "progress")]
            self.collector.finish_bar();
            return None;
        }
        let ordered = self.collector.ordered;
        let Some(mut st) = self.collector.wait_until(deadline, &self.shared, |st| next_is_in(st, ordered)) else {
            let task = self.spec.task;
            if self.shared.waiting_would_deadlock() {
                return Some(Err(TaskError::WaitInCallback { task }));
            }
            return Some(Err(TaskError::WaitTimeout { task, waited: timeout }));
        };
        let r = take_next(&mut st, ordered);
        drop(st);
        self.yielded += 1;
        r
    }

    /// The next outcome, for async code: a future that waits without blocking its thread
    /// (any runtime, or none), ready with `None` at the end; the same outcomes, in the same
    /// order, as [`next`](Iterator::next). The input is pulled as the future is polled.
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// async fn squares(pool: &multiproc::Pool) -> Vec<u64> {
    ///     let mut it = pool.imap(square, 0..4);
    ///     let mut out = Vec::new();
    ///     while let Some(r) = it.next_async().await {
    ///         out.push(r.unwrap());
    ///     }
    ///     out
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let mut fut = std::pin::pin!(squares(&pool));
    /// let waker = std::task::Waker::noop();
    /// // A spinning executor, to keep the example short: a real one sleeps until woken.
    /// let got = loop {
    ///     if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut std::task::Context::from_waker(&waker)) {
    ///         break v;
    ///     }
    /// };
    /// assert_eq!(got, [0, 1, 4, 9]);
    /// ```
    pub fn next_async(&mut self) -> NextItem<'_, 'a, R> {
        NextItem { iter: self }
    }

    /// Items submitted and not yet handed out (a stream's lower size hint).
    #[cfg(feature = "stream")]
    pub(crate) fn in_flight(&self) -> usize {
        self.pulled - self.yielded
    }

    pub(crate) fn poll_next_item(&mut self, cx: &Context<'_>) -> Poll<Option<Result<R, TaskError>>> {
        self.refill();
        if self.exhausted && self.yielded == self.pulled {
            #[cfg(feature = "progress")]
            self.collector.finish_bar();
            return Poll::Ready(None);
        }
        let ordered = self.collector.ordered;
        let mut st = self.collector.lock();
        if !next_is_in(&st, ordered) {
            if self.shared.waiting_would_deadlock() {
                // Awaited inside a callback of its pool: as `next` there.
                return Poll::Ready(Some(Err(TaskError::WaitInCallback { task: self.spec.task })));
            }
            match &st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => st.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        let r = take_next(&mut st, ordered);
        drop(st);
        self.yielded += 1;
        Poll::Ready(r)
    }
}

/// Whether an iterator's next outcome has come: the next in input order, or any.
fn next_is_in<R>(st: &CollectState<R>, ordered: bool) -> bool {
    if ordered { st.slots.front().is_some_and(Cell::is_filled) } else { !st.done.is_empty() }
}

/// Takes an iterator's next outcome, which has come.
fn take_next<R>(st: &mut CollectState<R>, ordered: bool) -> Option<Result<R, TaskError>> {
    if ordered {
        st.head += 1;
        st.slots.pop_front().and_then(Cell::into_option)
    } else {
        st.done.pop_front()
    }
}

/// The future of [`IMapIter::next_async`]: the iterator's next outcome.
///
/// ```
/// # use std::{future::Future, pin::pin, sync::Arc, task::{Context, Poll, Wake}};
/// # struct Unpark(std::thread::Thread);
/// # impl Wake for Unpark { fn wake(self: Arc<Self>) { self.0.unpark() } }
/// # fn block_on<F: Future>(f: F) -> F::Output {
/// #     let mut f = pin!(f);
/// #     let waker = Arc::new(Unpark(std::thread::current())).into();
/// #     let mut cx = Context::from_waker(&waker);
/// #     loop {
/// #         if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
/// #         std::thread::park();
/// #     }
/// # }
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2)?;
/// let mut squares = pool.imap(square, 0..3u64);
/// let mut got = Vec::new();
/// // `block_on` stands for any executor's: the future needs no particular runtime.
/// while let Some(outcome) = block_on(squares.next_async()) {
///     got.push(outcome?);
/// }
/// assert_eq!(got, [0, 1, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a future does nothing unless awaited"]
pub struct NextItem<'i, 'a, R> {
    iter: &'i mut IMapIter<'a, R>,
}

impl<R> std::fmt::Debug for NextItem<'_, '_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NextItem").field("iter", &self.iter).finish()
    }
}

impl<R: DeserializeOwned + Send + 'static> Future for NextItem<'_, '_, R> {
    type Output = Option<Result<R, TaskError>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.iter.poll_next_item(cx)
    }
}

impl<R> Drop for IMapIter<'_, R> {
    fn drop(&mut self) {
        if self.abort_on_drop && !(self.exhausted && self.yielded == self.pulled) {
            self.collector.cancel(&self.shared);
        }
    }
}

impl<R: DeserializeOwned + Send + 'static> Iterator for IMapIter<'_, R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None, Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing() -> TaskError {
        TaskError::Cancelled { task: "t" }
    }

    fn failed(i: u32) -> TaskError {
        TaskError::Codec { task: "t", message: format!("item {i}") }
    }

    #[test]
    fn runs_in_any_order_end_as_one_vector() {
        let mut runs = Runs::new(6);
        let (start, mut v) = runs.continue_at(2, 2);
        assert_eq!(start, 2);
        v.extend([2, 3]);
        runs.put_values(start, v);
        assert!(runs.store(4, Ok(4)));
        let (start, mut v) = runs.continue_at(0, 2);
        v.extend([0, 1]);
        runs.put_values(start, v);
        assert!(runs.store(5, Ok(5)));
        runs.settle();
        assert_eq!(runs.by_first.len(), 1);
        assert_eq!(runs.take_values(6, missing).unwrap(), [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn an_item_is_stored_once() {
        let mut runs = Runs::new(0);
        let (start, mut v) = runs.continue_at(0, 3);
        v.extend([0, 1, 2]);
        runs.put_values(start, v);
        assert!(runs.overlaps(2, 1) && runs.overlaps(1, 5) && !runs.overlaps(3, 2));
        assert!(!runs.store(1, Err(failed(1))));
        assert!(runs.store(4, Err(failed(4))));
        assert!(runs.overlaps(3, 2));
        assert_eq!(runs.take_values(5, missing).unwrap_err(), missing());
    }

    #[test]
    fn failures_and_gaps_keep_their_places() {
        let mut runs = Runs::new(4);
        assert!(runs.store(0, Ok(10)));
        assert!(runs.store(1, Err(failed(1))));
        assert!(runs.store(3, Ok(13)));
        let mut seen = Vec::new();
        runs.settle();
        runs.for_each(4, |o| {
            seen.push(o.map(|r| r.copied().map_err(|_| ())));
            true
        });
        assert_eq!(seen, [Some(Ok(10)), Some(Err(())), None, Some(Ok(13))]);
        assert_eq!(runs.take_values(4, missing).unwrap_err(), failed(1));
        let mut runs = Runs::new(4);
        runs.store(0, Ok(10));
        runs.store(1, Err(failed(1)));
        runs.store(3, Ok(13));
        let all = runs.take_all(4, missing);
        assert_eq!(all, [Ok(10), Err(failed(1)), Err(missing()), Ok(13)]);
    }
}
