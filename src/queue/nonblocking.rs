//! `Queue::get_async` and `put_async`: futures that never block their thread.
//!
//! Each poll tries the operation without waiting (`Patience::Try`: not for room or a
//! message, not for the get lock, not behind another thread of this process); when it
//! cannot complete, a [`Waiter`] thread waits as a blocking call would — a get behind the
//! get lock then on the getters' signal (`Ring::await_message`), a put on the producers'
//! signal until a consumer moves on (`Ring::await_head_change`) — but takes and puts
//! nothing, then wakes the task, which tries again. So a future dropped mid-wait loses no
//! message and puts none.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ring::Patience;
use super::{Queue, QueueError, Shared};
use crate::sync::WAIT_SLICE;
use crate::sync::waiter::{Waiter, until_stopped};

/// The future of [`Queue::get_async`]: the front item, taken only when it is ready.
///
/// ```
/// use multiproc::{Queue, QueueGet};
///
/// multiproc::init();
/// let q = Queue::<u32>::new()?;
/// q.put(5)?;
/// let front: QueueGet<'_, u32> = q.get_async();
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// assert_eq!(rt.block_on(front)?, 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a future does nothing unless awaited"]
#[derive(Debug)]
pub struct QueueGet<'q, T> {
    queue: &'q Queue<T>,
    waiter: Waiter,
}

/// The future of [`Queue::put_async`]: done once the item is in the queue.
///
/// Dropped before it is ready (a bounded queue stayed full), it has put nothing.
///
/// ```
/// use multiproc::{Queue, QueuePut};
///
/// multiproc::init();
/// let q = Queue::bounded(1)?;
/// let put: QueuePut<'_, String> = q.put_async("one".to_string());
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// rt.block_on(put)?;
/// assert_eq!(q.get()?, "one");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a future does nothing unless awaited"]
pub struct QueuePut<'q, T> {
    queue: &'q Queue<T>,
    item: Option<T>,
    waiter: Waiter,
}

impl<T> std::fmt::Debug for QueuePut<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuePut").field("queue", &self.queue).finish()
    }
}

// `item` is only moved out, never pinned.
impl<T> Unpin for QueuePut<'_, T> {}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Takes the front item, for async code: a future that never blocks its thread (any
    /// runtime, or none), with the outcomes of [`get`](Queue::get). While the queue is
    /// empty, one helper thread waits as a blocking `get` would, taking nothing, and wakes
    /// the task; dropping the future (a lost `select!`, a timeout) loses no message.
    ///
    /// ```
    /// use multiproc::{Process, Queue};
    ///
    /// fn produce(q: Queue<u32>) { q.put(7).unwrap(); }
    ///
    /// multiproc::init();
    /// let q = Queue::new()?;
    /// let mut p = Process::new(produce, q.clone());
    /// p.start()?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// assert_eq!(rt.block_on(q.get_async())?, 7);
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_async(&self) -> QueueGet<'_, T> {
        QueueGet { queue: self, waiter: Waiter::default() }
    }

    /// Puts `item` at the back, for async code: a future that never blocks its thread,
    /// with the outcomes of [`put`](Queue::put). An unbounded queue never waits (as `put`);
    /// while a bounded one is full, one helper thread waits for a consumer to take
    /// something and wakes the task. Dropping the future before it is ready puts nothing.
    ///
    /// ```
    /// use multiproc::Queue;
    ///
    /// multiproc::init();
    /// let q = Queue::bounded(1)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// rt.block_on(q.put_async("one".to_string()))?;
    /// assert_eq!(q.get()?, "one");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_async(&self, item: T) -> QueuePut<'_, T> {
        QueuePut { queue: self, item: Some(item), waiter: Waiter::default() }
    }
}

impl<T: Serialize + DeserializeOwned> Future for QueueGet<'_, T> {
    type Output = Result<T, QueueError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.queue.handle.get::<T>(Patience::Try) {
                Err(QueueError::Empty) => {}
                other => return Poll::Ready(other),
            }
            let shared: Arc<Shared> = self.queue.handle.shared.clone();
            let wait = move |stop: &_| until_stopped(stop, || shared.ring.await_message(WAIT_SLICE));
            if self.waiter.poll_wait(cx, wait).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned> Future for QueuePut<'_, T> {
    type Output = Result<(), QueueError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let Some(item) = this.item.as_ref() else { return Poll::Ready(Ok(())) };
            // Read before the try: a consumer that moves on after it wakes the helper.
            let seen = this.queue.handle.shared.ring.head();
            match this.queue.handle.put(item, Patience::Try) {
                Err(QueueError::Full) => {}
                other => {
                    this.item = None;
                    return Poll::Ready(other);
                }
            }
            let shared: Arc<Shared> = this.queue.handle.shared.clone();
            // Room by count after a slice without news: the try may have lost only a race
            // for this process's buffer (retried each slice if the bytes are what is full).
            let room = move || {
                let ring = &shared.ring;
                ring.await_head_change(seen, WAIT_SLICE) || ring.len() < ring.maxsize()
            };
            let wait = move |stop: &_| until_stopped(stop, room);
            if this.waiter.poll_wait(cx, wait).is_pending() {
                return Poll::Pending;
            }
        }
    }
}
