//! Consuming results from async code without blocking the executor's thread:
//! `IMapIter::next_async` (imap's outcomes in input order, imap_unordered's as they come)
//! and `AsCompleted::next_async` (separately submitted tasks in completion order). The
//! futures need no particular runtime; here a ten-line `block_on` drives them.
//!
//! Run with `cargo run --example async_next`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use multiproc::{Pool, as_completed};

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Wakes the thread running `block_on`.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&waker)) {
            return v;
        }
        std::thread::park(); // until a task's completion wakes us
    }
}

async fn run(pool: &Pool) {
    let mut unordered = pool.imap_unordered(nap, [300, 10, 150]);
    while let Some(r) = unordered.next_async().await {
        println!("imap_unordered: {} ms", r.unwrap());
    }
    let mut done = as_completed([pool.apply_async(nap, 200), pool.apply_async(nap, 20)]);
    while let Some(h) = done.next_async().await {
        println!("as_completed: {} ms", h.await.unwrap());
    }
}

fn main() {
    multiproc::init();
    let pool = Pool::new(3).unwrap();
    block_on(run(&pool));
}
