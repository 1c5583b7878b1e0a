//! A cluster pool's callbacks run where its results are delivered: on a thread of its
//! client's runtime (or on the caller's thread when the result was already there). A
//! callback that waited there for another result of the same pool waited for itself:
//! the client stalled, and with it every result of the pool. Now such a wait fails at once
//! with `TaskError::WaitInCallback` (as on a local pool; an `.await` there, a
//! `block_on`, is ready at once with it), `join` there is
//! `PoolError::JoinInCallback`, and a wait from anywhere else gets its result. Nothing
//! hangs, and the pool goes on.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use multiproc::{Pool, PoolError, TaskError, TaskOptions};
use multiproc_nats::testing::NatsServer;

mod common;

multiproc_nats::test_init!();

const ACK_WAIT: Duration = Duration::from_secs(10);

fn double(x: u64) -> u64 {
    x * 2
}

fn on_client_thread() -> bool {
    std::thread::current().name() == Some("multiproc-nats-client")
}

/// Runs `inside` in the callback of one task of `pool`: returns whether it ran on the
/// client's thread, and what it answered.
fn in_callback<T: Send + 'static>(pool: &Arc<Pool>, inside: impl FnOnce(&Pool) -> T + Send + 'static) -> (bool, T) {
    let (tx, rx) = mpsc::channel();
    let p = pool.clone();
    let opts = TaskOptions::new().callback(move |_: &u64| tx.send((on_client_thread(), inside(&p))).unwrap());
    assert_eq!(pool.apply_async_with(double, 1, opts).get_timeout(common::PATIENCE), Ok(2));
    rx.recv_timeout(common::PATIENCE).expect("the callback ended")
}

/// Polls `f` to its end on this thread, parking between polls (a `block_on`).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn a_callback_waiting_on_its_own_cluster_pool_is_answered_at_once() {
    let Some(server) = NatsServer::start("callback-waits") else { return };
    let _worker = common::start_worker(&server, "cbwait", 2, ACK_WAIT);
    let pool = Arc::new(common::cluster_pool(&server, "cbwait", ACK_WAIT, 2));
    let mut on_client = 0;
    for i in 0..20u64 {
        let (here, r) = in_callback(&pool, move |p| p.apply_async(double, i).get());
        if here {
            on_client += 1;
            assert!(matches!(r, Err(TaskError::WaitInCallback { .. })), "round {i}: {r:?}");
        } else {
            assert_eq!(r, Ok(2 * i), "round {i}: waited for off the client's thread");
        }
        let (here, r) = in_callback(&pool, move |p| block_on(p.apply_async(double, i)));
        if here {
            assert!(matches!(r, Err(TaskError::WaitInCallback { .. })), "round {i}, awaited: {r:?}");
        } else {
            assert_eq!(r, Ok(2 * i), "round {i}: awaited off the client's thread");
        }
        let (here, r) = in_callback(&pool, |p| p.map(double, 0..4u64));
        if here {
            assert!(matches!(r, Err(TaskError::WaitInCallback { .. })), "round {i}: {r:?}");
        } else {
            assert_eq!(r, Ok(vec![0, 2, 4, 6]));
        }
    }
    eprintln!("{on_client} of 20 callbacks ran on the client's thread");
    let (here, r) = in_callback(&pool, |p| {
        p.close();
        p.join()
    });
    if here {
        assert!(matches!(r, Err(PoolError::JoinInCallback)), "{r:?}");
        pool.join().unwrap();
    } else {
        r.unwrap();
    }
}

#[test]
fn terminate_or_the_last_handle_dropped_in_a_callback_stops_the_cluster_pool() {
    let Some(server) = NatsServer::start("callback-stops") else { return };
    let _worker = common::start_worker(&server, "cbstop", 2, ACK_WAIT);
    let pool = Arc::new(common::cluster_pool(&server, "cbstop", ACK_WAIT, 2));
    let (_, ()) = in_callback(&pool, |p| p.terminate());
    assert!(matches!(pool.apply(double, 3), Err(TaskError::Closed { .. } | TaskError::Terminated { .. })));
    drop(pool);

    let pool = Arc::new(common::cluster_pool(&server, "cbstop", ACK_WAIT, 2));
    let (tx, rx) = mpsc::channel();
    let (dropped_tx, dropped_rx) = mpsc::channel::<()>();
    let last = pool.clone();
    let opts = TaskOptions::new().callback(move |_: &u64| {
        // The caller's handle is gone first, so this one is the last.
        dropped_rx.recv().unwrap();
        drop(last);
        tx.send(()).unwrap();
    });
    let h = pool.apply_async_with(double, 1, opts);
    drop(pool);
    dropped_tx.send(()).unwrap();
    rx.recv_timeout(common::PATIENCE).expect("the callback that dropped the pool ended normally");
    assert_eq!(h.get_timeout(common::PATIENCE), Ok(2));
}
