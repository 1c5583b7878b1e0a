//! `as_completed` and `wait_results`: many `AsyncResult`s, of one pool or several, waited
//! on together (Python's `concurrent.futures.as_completed` and `wait`).
//!
//! Each handle's slot already wakes one `Waker` when its task ends (the `Future` side of
//! `AsyncResult`). Both functions register on every slot a waker that pushes the handle's
//! index onto one shared `Notifier` and signals its condition variable: the caller sleeps on
//! that one condition, woken once per finished task, with no polling and no thread per
//! handle.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::result::AsyncResult;

/// The indexes of the handles that ended, in the order they ended, and the task waiting
/// for the next one, if it waits in async code.
#[derive(Default)]
struct Ended {
    order: VecDeque<usize>,
    waker: Option<Waker>,
}

/// Where the handles' wake-ups meet: a queue of ended indexes, a condition variable for a
/// thread that waits, a waker for a task that waits.
#[derive(Default)]
struct Notifier {
    ended: Mutex<Ended>,
    cond: Condvar,
}

impl Notifier {
    fn lock(&self) -> MutexGuard<'_, Ended> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, index: usize) {
        let waker = {
            let mut ended = self.lock();
            ended.order.push_back(index);
            ended.waker.take()
        };
        self.cond.notify_one();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The next index that ended, waiting at most until `deadline` (`None`: no limit).
    fn pop(&self, deadline: Option<Instant>) -> Option<usize> {
        let mut ended = self.lock();
        loop {
            if let Some(i) = ended.order.pop_front() {
                return Some(i);
            }
            ended = match deadline {
                None => self.cond.wait(ended).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.cond.wait_timeout(ended, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }

    /// The next index that ended, or `None` after registering `cx`'s waker for the next.
    fn poll_pop(&self, cx: &Context<'_>) -> Option<usize> {
        let mut ended = self.lock();
        let next = ended.order.pop_front();
        if next.is_none() {
            match &ended.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => ended.waker = Some(cx.waker().clone()),
            }
        }
        next
    }
}

/// The waker registered on one handle's slot.
struct Watch {
    index: usize,
    notifier: Arc<Notifier>,
}

impl Wake for Watch {
    fn wake(self: Arc<Self>) {
        self.notifier.push(self.index);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.notifier.push(self.index);
    }
}

/// The handles, each watched by the shared notifier.
struct Watched<R> {
    handles: Vec<Option<AsyncResult<R>>>,
    wakers: Vec<Waker>,
    notifier: Arc<Notifier>,
    left: usize,
    /// Every handle before this index has been handed out (a place to start looking
    /// for the ones left, so that a look is not a walk over all of them each time).
    first_left: usize,
}

impl<R> Watched<R> {
    fn new(handles: impl IntoIterator<Item = AsyncResult<R>>) -> Self {
        let handles: Vec<_> = handles.into_iter().map(Some).collect();
        let notifier = Arc::new(Notifier::default());
        let mut wakers = Vec::with_capacity(handles.len());
        for (index, h) in handles.iter().enumerate() {
            let waker = Waker::from(Arc::new(Watch { index, notifier: notifier.clone() }));
            if h.as_ref().is_some_and(|h| h.watch(&waker)) {
                notifier.push(index);
            }
            wakers.push(waker);
        }
        let left = handles.len();
        Watched { handles, wakers, notifier, left, first_left: 0 }
    }

    /// Whether no task left can end while this thread waits: it is the thread that
    /// delivers the results of every one of them (a callback of their pool runs here).
    /// On any other thread the first handle left answers `false`, so this costs little.
    fn none_can_end_here(&mut self) -> bool {
        while self.handles.get(self.first_left).is_some_and(Option::is_none) {
            self.first_left += 1;
        }
        self.left > 0 && self.handles[self.first_left..].iter().flatten().all(AsyncResult::on_delivering_thread)
    }

    /// A handle left, not ended: for a caller that cannot wait here (see
    /// [`none_can_end_here`](Watched::none_can_end_here)); its `get` says why.
    fn take_one_left(&mut self) -> Option<AsyncResult<R>> {
        let h = self.handles.iter_mut().find_map(Option::take)?;
        self.left -= 1;
        Some(h)
    }

    /// The next handle to end, waiting at most until `deadline`; at once where no task
    /// left can end while this thread waits.
    fn next_ended(&mut self, deadline: Option<Instant>) -> Option<AsyncResult<R>> {
        while self.left > 0 {
            let deadline = if self.none_can_end_here() { Some(Instant::now()) } else { deadline };
            let i = self.notifier.pop(deadline)?;
            if let Some(h) = self.handles.get_mut(i).and_then(Option::take) {
                self.left -= 1;
                return Some(h);
            }
        }
        None
    }

    /// The next handle to end, or `Pending` until one has.
    fn poll_next_ended(&mut self, cx: &Context<'_>) -> Poll<Option<AsyncResult<R>>> {
        while self.left > 0 {
            let Some(i) = self.notifier.poll_pop(cx) else {
                // Awaited inside a callback of their pool: the handles left come out as
                // they are, as from `next` there.
                return if self.none_can_end_here() { Poll::Ready(self.take_one_left()) } else { Poll::Pending };
            };
            if let Some(h) = self.handles.get_mut(i).and_then(Option::take) {
                self.left -= 1;
                return Poll::Ready(Some(h));
            }
        }
        Poll::Ready(None)
    }

    /// The handles not handed out yet, in the order they were given, no longer watched.
    fn into_rest(mut self) -> Vec<AsyncResult<R>> {
        let handles = std::mem::take(&mut self.handles);
        handles.into_iter().flatten().collect()
    }
}

impl<R> Drop for Watched<R> {
    fn drop(&mut self) {
        for (h, w) in self.handles.iter().zip(&self.wakers) {
            if let Some(h) = h {
                h.unwatch(w);
            }
        }
    }
}

/// The handles `handles`, yielded one by one as their tasks end: in completion order, not
/// the order given (Python's `concurrent.futures.as_completed`). Each yielded handle has
/// ended, so its [`get`](AsyncResult::get) returns at once. The handles may come from
/// several pools.
///
/// The iterator sleeps while no task has ended, woken by the tasks' own completion (no
/// polling, no thread per handle); in async code, [`AsCompleted::next_async`] waits without
/// blocking the thread. [`AsCompleted::next_timeout`] bounds a wait, and
/// [`AsCompleted::into_pending`] gives back the handles not yet yielded; dropping the
/// iterator drops them (their tasks go on, unless made with
/// [`abort_on_drop`](AsyncResult::abort_on_drop)).
///
/// Inside a callback of the handles' pool (the thread that delivers their results, where
/// no task can end while it waits), the handles left come out at once, not ended: their
/// `get` answers [`TaskError::WaitInCallback`](crate::TaskError::WaitInCallback).
///
/// ```
/// use multiproc::Event;
/// fn wait_for((go, tag): (Event, u32)) -> u32 { go.wait().unwrap(); tag }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2).unwrap();
/// let (first, second) = (Event::new().unwrap(), Event::new().unwrap());
/// let handles = vec![pool.apply_async(wait_for, (second.clone(), 1)), pool.apply_async(wait_for, (first.clone(), 0))];
/// let mut done = multiproc::as_completed(handles);
/// first.set();
/// assert_eq!(done.next().unwrap().get().unwrap(), 0);
/// second.set();
/// assert_eq!(done.next().unwrap().get().unwrap(), 1);
/// assert!(done.next().is_none());
/// ```
pub fn as_completed<R>(handles: impl IntoIterator<Item = AsyncResult<R>>) -> AsCompleted<R> {
    AsCompleted { watched: Watched::new(handles) }
}

/// The iterator of [`as_completed`]: each handle once, as its task ends.
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2)?;
/// let handles: Vec<_> = (1..=3).map(|x| pool.apply_async(square, x)).collect();
/// let done = multiproc::as_completed(handles);
/// assert_eq!(done.pending(), 3);
/// let mut values: Vec<u64> = done.map(|h| h.get()).collect::<Result<_, _>>()?;
/// values.sort();
/// assert_eq!(values, [1, 4, 9]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AsCompleted<R> {
    watched: Watched<R>,
}

impl<R> std::fmt::Debug for AsCompleted<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted").field("pending", &self.watched.left).finish()
    }
}

impl<R> AsCompleted<R> {
    /// The next handle to end, waiting at most `timeout`; `None` if none ended by then
    /// or none is left ([`pending`](AsCompleted::pending) tells which).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::Event;
    /// fn wait_for(go: Event) -> bool { go.wait().unwrap(); true }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let go = Event::new().unwrap();
    /// let mut done = multiproc::as_completed([pool.apply_async(wait_for, go.clone())]);
    /// assert!(done.next_timeout(Duration::from_millis(10)).is_none());
    /// assert_eq!(done.pending(), 1);
    /// go.set();
    /// assert!(done.next_timeout(Duration::from_secs(60)).unwrap().get().unwrap());
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<AsyncResult<R>> {
        let deadline = Instant::now().checked_add(timeout);
        self.watched.next_ended(deadline)
    }

    /// The next handle to end, for async code: a future that sleeps without blocking its
    /// thread (any runtime, or none), ready with `None` once every handle has been yielded.
    ///
    /// ```
    /// fn double(x: u64) -> u64 { x * 2 }
    ///
    /// async fn total(pool: &multiproc::Pool) -> u64 {
    ///     let mut done = multiproc::as_completed((0..4).map(|i| pool.apply_async(double, i)));
    ///     let mut sum = 0;
    ///     while let Some(h) = done.next_async().await {
    ///         sum += h.await.unwrap();
    ///     }
    ///     sum
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let mut total = std::pin::pin!(total(&pool));
    /// let waker = std::task::Waker::noop();
    /// // A spinning executor, to keep the example short: a real one sleeps until woken.
    /// let sum = loop {
    ///     if let std::task::Poll::Ready(v) = total.as_mut().poll(&mut std::task::Context::from_waker(&waker)) {
    ///         break v;
    ///     }
    /// };
    /// assert_eq!(sum, 12);
    /// ```
    pub fn next_async(&mut self) -> NextCompleted<'_, R> {
        NextCompleted { watched: &mut self.watched }
    }

    /// The next handle to end, or `Pending` until one has (the stream's `poll_next`).
    #[cfg(feature = "stream")]
    pub(crate) fn poll_next_handle(&mut self, cx: &Context<'_>) -> Poll<Option<AsyncResult<R>>> {
        self.watched.poll_next_ended(cx)
    }

    /// How many handles have not been yielded yet.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::new(1)?;
    /// let mut done = multiproc::as_completed(vec![pool.apply_async(square, 2)]);
    /// assert_eq!(done.pending(), 1);
    /// done.next();
    /// assert_eq!(done.pending(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pending(&self) -> usize {
        self.watched.left
    }

    /// The handles not yielded yet, in the order they were given (their tasks go on).
    ///
    /// ```
    /// use multiproc::Event;
    /// fn wait_for(go: Event) -> bool { go.wait().unwrap(); true }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let go = Event::new().unwrap();
    /// let done = multiproc::as_completed([pool.apply_async(wait_for, go.clone())]);
    /// let rest = done.into_pending();
    /// go.set();
    /// assert!(rest.into_iter().next().unwrap().get().unwrap());
    /// ```
    pub fn into_pending(self) -> Vec<AsyncResult<R>> {
        self.watched.into_rest()
    }
}

impl<R> Iterator for AsCompleted<R> {
    type Item = AsyncResult<R>;

    fn next(&mut self) -> Option<AsyncResult<R>> {
        // `None` with handles left: inside a callback of their pool, where none can end;
        // they come out as they are, and their `get` answers `WaitInCallback`.
        self.watched.next_ended(None).or_else(|| self.watched.take_one_left())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.watched.left, Some(self.watched.left))
    }
}

impl<R> ExactSizeIterator for AsCompleted<R> {}

/// The future of [`AsCompleted::next_async`]: the next handle to end.
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
/// let pool = multiproc::Pool::new(1)?;
/// let mut done = multiproc::as_completed(vec![pool.apply_async(square, 5)]);
/// // `block_on` stands for any executor's: the future needs no particular runtime.
/// let first = block_on(done.next_async()).expect("one handle was given");
/// assert_eq!(first.get()?, 25);
/// assert!(block_on(done.next_async()).is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a future does nothing unless awaited"]
pub struct NextCompleted<'a, R> {
    watched: &'a mut Watched<R>,
}

impl<R> std::fmt::Debug for NextCompleted<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NextCompleted").field("pending", &self.watched.left).finish()
    }
}

impl<R> Future for NextCompleted<'_, R> {
    type Output = Option<AsyncResult<R>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.watched.poll_next_ended(cx)
    }
}

/// When [`wait_results`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION` and
/// `ALL_COMPLETED`). Whatever the choice, it also returns when its timeout has passed.
///
/// ```
/// use multiproc::{ReturnWhen, wait_results};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2)?;
/// let handles: Vec<_> = (0..4).map(|x| pool.apply_async(square, x)).collect();
/// let (done, not_done) = wait_results(handles, ReturnWhen::AllCompleted, None);
/// assert_eq!((done.len(), not_done.len()), (4, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any task has ended (with a value or an error).
    FirstCompleted,
    /// As soon as any task has failed; if none fails, when all have ended. A cancelled
    /// task counts as failed (its outcome is [`TaskError::Cancelled`](crate::TaskError::Cancelled)).
    FirstException,
    /// When every task has ended.
    AllCompleted,
}

/// Waits for the tasks of `handles` (of one pool or several) until `when` is met or
/// `timeout` has passed (`None`: no limit), and returns `(done, not_done)`: the handles
/// whose tasks have ended, in the order they ended, and the others, in the order given
/// (Python's `concurrent.futures.wait`; the name `wait` is
/// [`multiproc::wait`](crate::wait), `multiprocessing.connection.wait`). Nothing is
/// cancelled: the tasks of `not_done` go on. Inside a callback of the handles' pool, where
/// none of them can end while it waits, it returns at once.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Event, ReturnWhen};
/// fn wait_for(go: Option<Event>) -> bool { if let Some(go) = go { go.wait().unwrap(); } true }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2).unwrap();
/// let never = Event::new().unwrap();
/// let handles = vec![pool.apply_async(wait_for, Some(never.clone())), pool.apply_async(wait_for, None)];
/// let (done, not_done) = multiproc::wait_results(handles, ReturnWhen::FirstCompleted, None);
/// assert_eq!((done.len(), not_done.len()), (1, 1));
/// let (done, not_done) = multiproc::wait_results(not_done, ReturnWhen::AllCompleted, Some(Duration::from_millis(10)));
/// assert_eq!((done.len(), not_done.len()), (0, 1)); // timed out: the task goes on
/// never.set();
/// assert!(not_done.into_iter().all(|h| h.get().unwrap()));
/// ```
pub fn wait_results<R>(
    handles: impl IntoIterator<Item = AsyncResult<R>>,
    when: ReturnWhen,
    timeout: Option<Duration>,
) -> (Vec<AsyncResult<R>>, Vec<AsyncResult<R>>) {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut watched = Watched::new(handles);
    let mut done = Vec::new();
    while !met(when, &done, watched.left) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        match watched.next_ended(deadline) {
            Some(h) => done.push(h),
            None => break,
        }
    }
    // Tasks that ended meanwhile are done too, though their wake-up is not yet seen.
    let mut not_done = Vec::with_capacity(watched.left);
    for h in watched.into_rest() {
        if h.ready() { done.push(h) } else { not_done.push(h) }
    }
    (done, not_done)
}

/// Whether `wait_results` may return, having seen `done` end and `left` not.
fn met<R>(when: ReturnWhen, done: &[AsyncResult<R>], left: usize) -> bool {
    left == 0
        || match when {
            ReturnWhen::FirstCompleted => !done.is_empty(),
            ReturnWhen::FirstException => done.iter().any(|h| h.successful() == Some(false)),
            ReturnWhen::AllCompleted => false,
        }
}
