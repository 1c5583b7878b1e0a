//! `AsyncResult` and `MapResult` are futures that need no runtime: driven here by a
//! minimal hand-written executor.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use multiproc::{Pool, TaskError};

multiproc::test_init!();

fn double(x: u64) -> u64 {
    x * 2
}

fn boom(_: u64) -> u64 {
    panic!("boom")
}

/// Wakes a blocked `block_on`.
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

fn block_on<F: Future>(f: F) -> F::Output {
    let signal = Arc::new(Signal { woken: Mutex::new(false), cond: Condvar::new() });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        let mut woken = signal.woken.lock().unwrap();
        while !*woken {
            woken = signal.cond.wait(woken).unwrap();
        }
        *woken = false;
    }
}

#[test]
fn an_async_result_can_be_awaited() {
    let pool = Pool::new(2).unwrap();
    let v = block_on(async {
        let a = pool.apply_async(double, 20).await.unwrap();
        let b = pool.apply_async(double, a).await.unwrap();
        let all = pool.map_async(double, 0..5).await.unwrap();
        b + all.iter().sum::<u64>()
    });
    assert_eq!(v, 80 + 20);
}

#[test]
fn a_failed_task_is_an_error_when_awaited() {
    let pool = Pool::new(1).unwrap();
    let r = block_on(pool.apply_async(boom, 1));
    assert!(matches!(r, Err(TaskError::Panicked { .. })));
}

#[test]
fn many_futures_complete() {
    let pool = Pool::new(2).unwrap();
    let hs: Vec<_> = (0..100).map(|i| pool.apply_async(double, i)).collect();
    let sum = block_on(async {
        let mut s = 0;
        for h in hs {
            s += h.await.unwrap();
        }
        s
    });
    assert_eq!(sum, 2 * (0..100).sum::<u64>());
}
