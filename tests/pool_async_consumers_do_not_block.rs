//! `AsCompleted::next_async` and `IMapIter::next_async` in async code: on one thread, a
//! consumer awaiting the next outcome and a producer releasing the tasks take turns. A
//! `next_async` that blocked its thread would never let the producer run (the test would
//! hang); the outcomes come out in the order the producer released them (or, for `imap`,
//! in input order).

use std::cell::RefCell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use multiproc::{Event, MapOptions, Pool, as_completed};

multiproc::test_init!();

fn wait_for((go, tag): (Event, u32)) -> u32 {
    go.wait().unwrap();
    tag
}

/// Wakes the executor's thread.
struct Signal {
    woken: Mutex<bool>,
    cond: Condvar,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        *self.woken.lock().unwrap() = true;
        self.cond.notify_one();
    }
}

/// Runs two futures to completion on this thread, sleeping while neither can go on.
fn join2(a: impl Future<Output = ()>, b: impl Future<Output = ()>) {
    let signal = Arc::new(Signal { woken: Mutex::new(false), cond: Condvar::new() });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut a_done, mut b_done) = (false, false);
    loop {
        a_done = a_done || a.as_mut().poll(&mut cx).is_ready();
        b_done = b_done || b.as_mut().poll(&mut cx).is_ready();
        if a_done && b_done {
            return;
        }
        let mut woken = signal.woken.lock().unwrap();
        while !*woken {
            woken = signal.cond.wait(woken).unwrap();
        }
        *woken = false;
    }
}

/// Ready once `cond` holds; until then gives the thread back to the executor.
struct Until<F>(F);

impl<F: FnMut() -> bool + Unpin> Future for Until<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if (self.0)() {
            return Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn next_async_yields_in_completion_order_without_blocking_its_thread() {
    let pool = Pool::new(3).unwrap();
    let go: Vec<Event> = (0..3).map(|_| Event::new().unwrap()).collect();
    let handles: Vec<_> = (0..3u32).map(|i| pool.apply_async(wait_for, (go[i as usize].clone(), i))).collect();
    let mut done = as_completed(handles);
    let seen = RefCell::new(Vec::new());
    let consumer = async {
        while let Some(h) = done.next_async().await {
            let v = h.await.unwrap();
            seen.borrow_mut().push(v);
        }
    };
    let producer = async {
        for (k, i) in [2usize, 0, 1].into_iter().enumerate() {
            go[i].set();
            Until(|| seen.borrow().len() > k).await;
        }
    };
    join2(consumer, producer);
    assert_eq!(*seen.borrow(), [2, 0, 1]);
}

/// Releases `go[i]` for each `i` of `order`, each time waiting until `seen` has grown
/// past `k` (or not waiting, with `wait_between == false`).
async fn release(go: &[Event], order: &[usize], seen: &RefCell<Vec<u32>>, wait_between: bool) {
    for (k, &i) in order.iter().enumerate() {
        go[i].set();
        if wait_between {
            Until(|| seen.borrow().len() > k).await;
        }
    }
}

fn tagged(go: &[Event]) -> Vec<(Event, u32)> {
    go.iter().cloned().zip(0..).collect()
}

#[test]
fn imap_unordered_next_async_yields_in_completion_order_without_blocking_its_thread() {
    let pool = Pool::new(3).unwrap();
    let go: Vec<Event> = (0..3).map(|_| Event::new().unwrap()).collect();
    let mut it = pool.imap_unordered_with(wait_for, tagged(&go), &MapOptions::new().window(3));
    let seen = RefCell::new(Vec::new());
    let consumer = async {
        while let Some(r) = it.next_async().await {
            seen.borrow_mut().push(r.unwrap());
        }
    };
    join2(consumer, release(&go, &[1, 2, 0], &seen, true));
    assert_eq!(*seen.borrow(), [1, 2, 0]);
}

#[test]
fn imap_next_async_keeps_input_order() {
    let pool = Pool::new(3).unwrap();
    let go: Vec<Event> = (0..3).map(|_| Event::new().unwrap()).collect();
    let mut it = pool.imap_with(wait_for, tagged(&go), &MapOptions::new().window(3));
    let seen = RefCell::new(Vec::new());
    let consumer = async {
        while let Some(r) = it.next_async().await {
            seen.borrow_mut().push(r.unwrap());
        }
    };
    join2(consumer, release(&go, &[2, 1, 0], &seen, false));
    assert_eq!(*seen.borrow(), [0, 1, 2]);
}
