//! `get_async` and `put_async` of the queue proxies: futures that never wait on their
//! thread for the queue.
//!
//! Each poll makes the non-waiting call (`get_nowait`/`put_nowait`: one request and its
//! reply, which do not wait in the server); when the queue is empty (or full), a
//! [`Waiter`] thread sends `Q_READY`, which waits in the server, one slice at a time, until
//! a `get` (or `put`) could go on, taking and putting nothing; then the task tries again.
//! So a future dropped mid-wait loses no item and puts none.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client;
use super::error::ManagerError;
use super::handle::Handle;
use super::protocol::{Wait, queue as op};
use crate::sync::WAIT_SLICE;
use crate::sync::waiter::{Waiter, until_stopped};

/// The future of `QueueProxy::get_async` and `JoinableQueueProxy::get_async`: the front
/// item, taken only when it is ready.
///
/// ```
/// use multiproc::manager::ProxyGet;
///
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// let q = manager.queue::<u32>(0)?;
/// q.put(9)?;
/// let front: ProxyGet<'_, u32> = q.get_async();
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// assert_eq!(rt.block_on(front)?, 9);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a future does nothing unless awaited"]
#[derive(Debug)]
pub struct ProxyGet<'p, T> {
    h: &'p Handle,
    waiter: Waiter,
    _t: std::marker::PhantomData<fn() -> T>,
}

/// The future of `QueueProxy::put_async` and `JoinableQueueProxy::put_async`: done once
/// the item is in the queue; dropped before that, it has put nothing.
///
/// ```
/// use multiproc::manager::ProxyPut;
///
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// let q = manager.queue::<u32>(1)?;
/// let put: ProxyPut<'_, u32> = q.put_async(3);
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// rt.block_on(put)?;
/// assert_eq!(q.get()?, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a future does nothing unless awaited"]
pub struct ProxyPut<'p, T> {
    h: &'p Handle,
    item: Option<T>,
    waiter: Waiter,
}

impl<T> std::fmt::Debug for ProxyPut<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyPut").field("queue", self.h).finish()
    }
}

// `item` is only moved out, never pinned.
impl<T> Unpin for ProxyPut<'_, T> {}

impl<'p, T> ProxyGet<'p, T> {
    pub(super) fn new(h: &'p Handle) -> Self {
        ProxyGet { h, waiter: Waiter::default(), _t: std::marker::PhantomData }
    }
}

impl<'p, T> ProxyPut<'p, T> {
    pub(super) fn new(h: &'p Handle, item: T) -> Self {
        ProxyPut { h, item: Some(item), waiter: Waiter::default() }
    }
}

/// Waits in the server, one slice at a time until `stop`, until the queue has an item
/// (`room: false`) or room (`room: true`); an error ends the wait (the next try reports it).
fn ready(h: Handle, room: bool) -> impl FnOnce(&std::sync::atomic::AtomicBool) + Send + 'static {
    move |stop| {
        until_stopped(stop, || {
            let wait = Wait::micros(Some(WAIT_SLICE));
            h.call(op::Q_READY, |w| w.u64(h.id).u64(wait).u8(u8::from(room)).done(), client::value::<bool>)
                .unwrap_or(true)
        })
    }
}

impl<T: DeserializeOwned> Future for ProxyGet<'_, T> {
    type Output = Result<T, ManagerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let h = self.h;
            let now = Wait::micros(Some(Duration::ZERO));
            match h.call(op::Q_GET, |w| w.u64(h.id).u64(now).done(), client::value::<T>) {
                Err(ManagerError::Empty) => {}
                other => return Poll::Ready(other),
            }
            if self.waiter.poll_wait(cx, ready(h.uncounted(), false)).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<T: Serialize> Future for ProxyPut<'_, T> {
    type Output = Result<(), ManagerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let h = this.h;
            let Some(item) = this.item.as_ref() else { return Poll::Ready(Ok(())) };
            let now = Wait::micros(Some(Duration::ZERO));
            match h.call(op::Q_PUT, |w| w.u64(h.id).u64(now).value(item)?.done(), client::unit) {
                Err(ManagerError::Full) => {}
                other => {
                    this.item = None;
                    return Poll::Ready(other);
                }
            }
            if this.waiter.poll_wait(cx, ready(h.uncounted(), true)).is_pending() {
                return Poll::Pending;
            }
        }
    }
}
