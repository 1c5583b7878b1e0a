//! `futures_core::Stream` views of `IMapIter` and `AsCompleted` (feature `stream`).
//!
//! Both are already `Iterator`s with a `next_async`; a `Stream` impl on the types
//! themselves would make every `StreamExt` method (`next`, `map`, `collect`...) ambiguous
//! with the `Iterator` one, so each gets an `into_stream()` giving a type that is only a
//! `Stream`. Each poll registers the task's waker where the outcome lands: no thread, no
//! polling, any runtime.

use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;

use super::completion::AsCompleted;
use super::error::TaskError;
use super::map::IMapIter;
use super::result::AsyncResult;

/// An [`IMapIter`] as a [`futures_core::Stream`] (from [`IMapIter::into_stream`]): the same
/// outcomes, in the same order, as [`next_async`](IMapIter::next_async) gives, waited for
/// without blocking the thread. Dropping it drops the iterator (and cancels the rest if it
/// was made with [`abort_on_drop`](IMapIter::abort_on_drop)).
///
/// ```
/// use futures_util::StreamExt;
/// fn square(x: u64) -> u64 { x * x }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2).unwrap();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let got: Vec<u64> = rt.block_on(pool.imap(square, 0..4).into_stream().map(Result::unwrap).collect());
/// assert_eq!(got, [0, 1, 4, 9]);
/// ```
#[derive(Debug)]
#[must_use = "a stream does nothing unless polled"]
pub struct IMapStream<'a, R> {
    iter: IMapIter<'a, R>,
}

impl<'a, R: DeserializeOwned + Send + 'static> IMapIter<'a, R> {
    /// This iterator as a [`futures_core::Stream`] ([`IMapStream`]); feature `stream`.
    pub fn into_stream(self) -> IMapStream<'a, R> {
        IMapStream { iter: self }
    }
}

impl<'a, R> IMapStream<'a, R> {
    /// The iterator back, to go on with `next` or `next_timeout`.
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let mut it = pool.imap(square, 0..2).into_stream().into_inner();
    /// assert_eq!(it.next().unwrap().unwrap(), 0);
    /// ```
    pub fn into_inner(self) -> IMapIter<'a, R> {
        self.iter
    }
}

impl<R: DeserializeOwned + Send + 'static> futures_core::Stream for IMapStream<'_, R> {
    type Item = Result<R, TaskError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().iter.poll_next_item(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.iter.in_flight(), None)
    }
}

/// An [`AsCompleted`] as a [`futures_core::Stream`] (from [`AsCompleted::into_stream`]):
/// the handles in the order their tasks end; each one yielded has ended, so awaiting it
/// is immediate.
///
/// ```
/// use futures_util::StreamExt;
/// fn double(x: u64) -> u64 { x * 2 }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2).unwrap();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let sum: u64 = rt.block_on(async {
///     let done = multiproc::as_completed((0..4).map(|i| pool.apply_async(double, i))).into_stream();
///     done.then(|h| h).map(Result::unwrap).fold(0, |a, b| async move { a + b }).await
/// });
/// assert_eq!(sum, 12);
/// ```
#[derive(Debug)]
#[must_use = "a stream does nothing unless polled"]
pub struct CompletedStream<R> {
    inner: AsCompleted<R>,
}

impl<R> AsCompleted<R> {
    /// This iterator as a [`futures_core::Stream`] ([`CompletedStream`]); feature `stream`.
    pub fn into_stream(self) -> CompletedStream<R> {
        CompletedStream { inner: self }
    }
}

impl<R> CompletedStream<R> {
    /// The handles not yielded yet, in the order given (their tasks go on).
    ///
    /// ```
    /// fn double(x: u64) -> u64 { x * 2 }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let rest = multiproc::as_completed([pool.apply_async(double, 1)]).into_stream().into_pending();
    /// assert_eq!(rest.into_iter().next().unwrap().get().unwrap(), 2);
    /// ```
    pub fn into_pending(self) -> Vec<AsyncResult<R>> {
        self.inner.into_pending()
    }
}

impl<R> futures_core::Stream for CompletedStream<R> {
    type Item = AsyncResult<R>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_next_handle(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.inner.pending(), Some(self.inner.pending()))
    }
}
