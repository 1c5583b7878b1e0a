//! `AsyncResult`: the handle of one submitted task.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::engine::Shared;
use super::error::TaskError;
use super::item::{Delivered, Outcome};
use super::submit::{Sink, Submission};

type Callback<R> = Box<dyn FnOnce(&R) + Send>;
type ErrorCallback = Box<dyn FnOnce(&TaskError) + Send>;

/// Arguments up to this size share one allocation with their slot (see [`SlotHome`]).
pub(crate) const JOINT_SUBMISSION_BYTES: usize = 1024;

struct SlotState<R> {
    /// The error boxed: it is several times the size of a small value, and a burst of
    /// `apply_async` keeps a slot per task (memory the parent first touches, page by page).
    outcome: Option<Result<R, Box<TaskError>>>,
    done: bool,
    waiters: usize,
    waker: Option<Waker>,
    /// Boxed, as most tasks have none: a slot per task of a burst stays small.
    callbacks: Option<Box<Callbacks<R>>>,
}

/// What runs on the driver thread as the task ends, before its outcome is ready.
type Callbacks<R> = (Option<Callback<R>>, Option<ErrorCallback>);

/// Where one task's outcome lands; shared by the driver and the `AsyncResult`.
pub(crate) struct Slot<R> {
    task: &'static str,
    state: Mutex<SlotState<R>>,
    cond: Condvar,
    cancelled: AtomicBool,
}

impl<R> Slot<R> {
    pub(crate) fn new(
        task: &'static str,
        callback: Option<Callback<R>>,
        error_callback: Option<ErrorCallback>,
    ) -> Self {
        Slot {
            task,
            state: Mutex::new(SlotState {
                outcome: None,
                done: false,
                waiters: 0,
                waker: None,
                callbacks: (callback.is_some() || error_callback.is_some())
                    .then(|| Box::new((callback, error_callback))),
            }),
            cond: Condvar::new(),
            cancelled: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState<R>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the outcome unless one is there already; wakes whoever waits.
    pub(crate) fn set(&self, outcome: Result<R, TaskError>) -> bool {
        let waker;
        {
            let mut st = self.lock();
            if st.done {
                return false;
            }
            st.outcome = Some(outcome.map_err(Box::new));
            st.done = true;
            if st.waiters > 0 {
                self.cond.notify_all();
            }
            waker = st.waker.take();
        }
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    fn is_done(&self) -> bool {
        self.lock().done
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for Slot<R> {
    fn deliver(&self, _index: usize, outcome: Outcome<'_>) -> Delivered {
        // One look at the state: whether it ended, and the callbacks to run if not.
        let callbacks = {
            let mut st = self.lock();
            if st.done {
                return Delivered::Ignored;
            }
            st.callbacks.take()
        };
        let (result, mut delivered) = outcome.decode::<R>(self.task);
        // Python runs the callback before the result counts as ready.
        let (cb, ecb) = callbacks.map_or((None, None), |b| *b);
        let ran = match &result {
            Ok(v) => cb.map(|cb| catch_unwind(AssertUnwindSafe(|| cb(v)))),
            Err(e) => ecb.map(|cb| catch_unwind(AssertUnwindSafe(|| cb(e)))),
        };
        if let Some(Err(p)) = ran {
            let what = super::guard::panic_message(p.as_ref());
            eprintln!("multiproc pool: a callback of task `{}` panicked: {what} (the pool goes on)", self.task);
            if matches!(delivered, Delivered::Value) {
                delivered = Delivered::CallbackPanicked;
            }
        }
        self.set(result);
        delivered
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// Where an `AsyncResult`'s slot lives.
///
/// A small task's slot is the sink of its submission, one allocation the handle and the
/// driver share: `apply_async` makes one block, not two, in a burst where fresh memory
/// is what the submitting thread spends most on; and the thread that made it frees it
/// (when the driver thread freed it, the two fought over the allocator's lock). A large
/// argument, or one carrying descriptors, is not kept alive by the handle: its slot is
/// an allocation of its own, the submission's sink an `Arc` of it.
pub(crate) enum SlotHome<R> {
    /// The slot inside the task's submission.
    Joint(Arc<Submission<Slot<R>>>),
    /// The slot on its own.
    Alone(Arc<Slot<R>>),
}

impl<R> std::ops::Deref for SlotHome<R> {
    type Target = Slot<R>;

    fn deref(&self) -> &Slot<R> {
        match self {
            SlotHome::Joint(sub) => &sub.sink,
            SlotHome::Alone(slot) => slot,
        }
    }
}

/// The result of [`Pool::apply_async`](crate::Pool::apply_async): a task running in the
/// pool, like Python's `AsyncResult`.
///
/// Wait for it with [`get`](AsyncResult::get) (or [`get_timeout`](AsyncResult::get_timeout)),
/// look at it with [`ready`](AsyncResult::ready) and [`successful`](AsyncResult::successful),
/// stop it with [`cancel`](AsyncResult::cancel), or `.await` it: it is a
/// [`Future`] that needs no particular runtime. Dropping it does not stop the task,
/// unless it was made to with [`abort_on_drop`](AsyncResult::abort_on_drop). Many handles,
/// of one pool or several, are waited on together with [`as_completed`](crate::as_completed)
/// (in completion order) and [`wait_results`](crate::wait_results).
///
/// ```
/// use std::time::Duration;
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2).unwrap();
/// let r = pool.apply_async(square, 7);
/// r.wait();
/// assert!(r.ready());
/// assert_eq!(r.successful(), Some(true));
/// assert_eq!(r.get().unwrap(), 49);
/// ```
pub struct AsyncResult<R> {
    slot: SlotHome<R>,
    shared: Option<Arc<Shared>>,
    /// Whether dropping this handle cancels the task ([`AsyncResult::abort_on_drop`]).
    abort_on_drop: bool,
    _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult").field("task", &self.slot.task).field("ready", &self.ready()).finish()
    }
}

impl<R> AsyncResult<R> {
    pub(crate) fn new(slot: SlotHome<R>, shared: Option<Arc<Shared>>) -> Self {
        AsyncResult { slot, shared, abort_on_drop: false, _r: PhantomData }
    }

    /// Waits for the task and returns its value or why there is none.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(1)?;
    /// assert_eq!(pool.apply_async(square, 4).get()?, 16);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Inside a callback of the same pool (which runs on the thread that delivers results)
    /// it does not wait: a result not there yet is [`TaskError::WaitInCallback`].
    pub fn get(self) -> Result<R, TaskError> {
        if !self.wait_done() {
            return Err(TaskError::WaitInCallback { task: self.slot.task });
        }
        self.take()
    }

    /// Waits at most `timeout`. If the task has not ended by then, returns
    /// [`TaskError::WaitTimeout`]; the task itself goes on (use
    /// [`cancel`](AsyncResult::cancel) to stop it, or a task timeout to bound it).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::TaskError;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let r = pool.apply_async(nap, 2_000);
    /// assert!(matches!(r.get_timeout(Duration::from_millis(10)), Err(TaskError::WaitTimeout { .. })));
    /// ```
    pub fn get_timeout(self, timeout: Duration) -> Result<R, TaskError> {
        if !self.wait_timeout(timeout) {
            let task = self.slot.task;
            return Err(if self.on_delivering_thread() {
                TaskError::WaitInCallback { task }
            } else {
                TaskError::WaitTimeout { task, waited: timeout }
            });
        }
        self.take()
    }

    /// Whether this thread delivers this handle's result: a callback of its pool runs
    /// here, and a wait could never end.
    pub(crate) fn on_delivering_thread(&self) -> bool {
        self.shared.as_ref().is_some_and(|shared| shared.waiting_would_deadlock())
    }

    fn take(&self) -> Result<R, TaskError> {
        let mut st = self.slot.lock();
        st.outcome.take().map_or(Err(TaskError::Cancelled { task: self.slot.task }), |r| r.map_err(|e| *e))
    }

    /// Whether the task has ended (with a value or an error).
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(1)?;
    /// let h = pool.apply_async(square, 4);
    /// h.wait();
    /// assert!(h.ready());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ready(&self) -> bool {
        self.slot.is_done()
    }

    /// `Some(true)` if the task ended with a value, `Some(false)` if it failed, `None`
    /// while it runs (where Python raises `ValueError`).
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(1)?;
    /// let h = pool.apply_async(square, 4);
    /// h.wait();
    /// assert_eq!(h.successful(), Some(true)); // None while it runs
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn successful(&self) -> Option<bool> {
        let st = self.slot.lock();
        if !st.done { None } else { Some(matches!(st.outcome, Some(Ok(_)))) }
    }

    /// Waits until the task has ended.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(1)?;
    /// let h = pool.apply_async(square, 4);
    /// h.wait(); // until it ends, without taking the value
    /// assert_eq!(h.get()?, 16);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Inside a callback of the same pool it returns at once: the thread that would
    /// deliver the result is the one waiting (see [`TaskError::WaitInCallback`]).
    pub fn wait(&self) {
        self.wait_done();
    }

    /// [`wait`](AsyncResult::wait), answering whether the task ended (it did, unless
    /// this is the thread that delivers its result).
    fn wait_done(&self) -> bool {
        let mut st = self.slot.lock();
        if !st.done && self.on_delivering_thread() {
            return false;
        }
        while !st.done {
            st.waiters += 1;
            st = self.slot.cond.wait(st).unwrap_or_else(|e| e.into_inner());
            st.waiters -= 1;
        }
        true
    }

    /// Waits at most `timeout`; returns whether the task has ended.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// use std::time::Duration;
    /// let pool = multiproc::Pool::new(1)?;
    /// let h = pool.apply_async(square, 4);
    /// assert!(h.wait_timeout(Duration::from_secs(30)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Inside a callback of the same pool it answers at once, as [`wait`](AsyncResult::wait)
    /// does.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut st = self.slot.lock();
        if !st.done && self.on_delivering_thread() {
            return false;
        }
        while !st.done {
            let Some(deadline) = deadline else {
                // Too far away to represent: wait without a deadline.
                st.waiters += 1;
                st = self.slot.cond.wait(st).unwrap_or_else(|e| e.into_inner());
                st.waiters -= 1;
                continue;
            };
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            st.waiters += 1;
            st = self.slot.cond.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
            st.waiters -= 1;
        }
        true
    }

    /// Makes dropping this handle [`cancel`](AsyncResult::cancel) its task, if it has not
    /// ended: a task that lost a `select!` or a timeout, or whose handle went out of scope
    /// on an early return, stops, and a worker running it is killed (and replaced) at once
    /// instead of staying busy. Dropping a handle whose task ended changes nothing, so
    /// `get` and `.await` behave as usual; but a [`get_timeout`](AsyncResult::get_timeout)
    /// that gives up drops the handle, so it cancels the task (despite what its
    /// [`TaskError::WaitTimeout`] says): bound a wait with
    /// [`wait_timeout`](AsyncResult::wait_timeout) to keep the task.
    ///
    /// ```
    /// use multiproc::Event;
    /// fn wait_for(go: Event) -> bool { go.wait().unwrap(); true }
    /// fn double(x: u64) -> u64 { x * 2 }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let never = Event::new().unwrap();
    /// drop(pool.apply_async(wait_for, never).abort_on_drop()); // its worker is freed
    /// assert_eq!(pool.apply(double, 21).unwrap(), 42);
    /// ```
    pub fn abort_on_drop(mut self) -> Self {
        self.abort_on_drop = true;
        self
    }

    /// Cancels the task: one not yet started is dropped; a running one has its worker
    /// killed (and replaced). Returns `false` if the task had already ended. Afterwards
    /// `get` returns [`TaskError::Cancelled`].
    ///
    /// ```
    /// use multiproc::TaskError;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let r = pool.apply_async(nap, 60_000);
    /// assert!(r.cancel());
    /// assert!(matches!(r.get(), Err(TaskError::Cancelled { .. })));
    /// assert_eq!(pool.apply(nap, 1).unwrap(), 1); // a fresh worker took over
    /// ```
    pub fn cancel(&self) -> bool {
        if !self.slot.set(Err(TaskError::Cancelled { task: self.slot.task })) {
            return false;
        }
        self.slot.cancelled.store(true, Ordering::Relaxed);
        if let Some(shared) = &self.shared {
            shared.request_cancel();
        }
        true
    }
}

impl<R> AsyncResult<R> {
    /// Registers `waker` to be woken when the task ends, in place of any earlier one (the
    /// one a `Future` poll left); returns `true`, registering nothing, if it has ended.
    /// What [`as_completed`](crate::as_completed) and [`wait_results`](crate::wait_results)
    /// build on: the slot's own wake-up, no thread and no polling.
    pub(crate) fn watch(&self, waker: &Waker) -> bool {
        let mut st = self.slot.lock();
        if st.done {
            return true;
        }
        st.waker = Some(waker.clone());
        false
    }

    /// Forgets `waker` if it is the one registered (so a handle given back does not keep it).
    pub(crate) fn unwatch(&self, waker: &Waker) {
        let mut st = self.slot.lock();
        if st.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            st.waker = None;
        }
    }
}

impl<R> Drop for AsyncResult<R> {
    fn drop(&mut self) {
        if self.abort_on_drop {
            // Does nothing if the task has ended: `cancel` only replaces a missing outcome.
            self.cancel();
        }
    }
}

impl<R> Future for AsyncResult<R> {
    type Output = Result<R, TaskError>;

    /// Ready once the task has ended. Polling again after that gives
    /// [`TaskError::Cancelled`] (the value was handed out already). Polled inside a
    /// callback of its pool before the task has ended, it is ready at once with
    /// [`TaskError::WaitInCallback`], as [`get`](AsyncResult::get) is.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.slot.lock();
        if st.done {
            let outcome = st.outcome.take().map(|r| r.map_err(|e| *e));
            return Poll::Ready(outcome.unwrap_or(Err(TaskError::Cancelled { task: self.slot.task })));
        }
        if self.on_delivering_thread() {
            // Awaited inside a callback of its pool (a `block_on` there): the result
            // could never come while this thread waits. The task goes on; a later poll
            // from another thread still gets its outcome.
            return Poll::Ready(Err(TaskError::WaitInCallback { task: self.slot.task }));
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
