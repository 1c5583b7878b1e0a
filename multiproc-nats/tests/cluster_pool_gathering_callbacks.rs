//! Callbacks that run on the gathering thread (the thread that sends gathered `apply`
//! submissions) and submit again must not deadlock it: a one-item map cancelled before
//! its gathered batch left has its error callback run there, and that callback's own
//! submission, waited for there, gets its result; a burst of `apply_async` whose pool is terminated
//! while some wait to be gathered has their error callbacks run there too, and their
//! submissions to the terminated pool are refused at once. Every item settles exactly
//! once; nothing hangs.
//!
//! Where a callback runs depends on how the cancel or the termination races the
//! gathering thread's short linger: the test's claims hold wherever it runs, and it
//! says how many ran on the gathering thread.

use std::sync::mpsc;
use std::time::Duration;

use multiproc::{Pool, TaskError, TaskOptions};
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, ClientConfig, ClusterPool};

mod common;

multiproc_nats::test_init!();

const ACK_WAIT: Duration = Duration::from_secs(10);

fn double(x: u64) -> u64 {
    x * 2
}

fn gathered_pool(server: &NatsServer, pool: &str) -> Pool {
    let config = ClientConfig::new(BrokerConfig::parse(&server.url()).unwrap()).queue(common::queue(pool, ACK_WAIT));
    ClusterPool::with_client(config).processes(2).gather(true).connect().expect("the cluster pool connects")
}

fn on_gathering_thread() -> bool {
    std::thread::current().name() == Some("multiproc-nats-gather")
}

/// What one round's callback saw: the map's own outcome, where it ran, and what its own
/// submission gave.
enum Heard {
    Values(Vec<u64>),
    Failed { cancelled: bool, gathering: bool, nested: Nested },
}

/// The outcome of a callback's own submission, or its handle when the callback could not
/// wait for it.
enum Nested {
    Got(Result<u64, TaskError>),
    Later(multiproc::AsyncResult<u64>),
}

#[test]
fn an_error_callback_on_the_gathering_thread_that_applies_gets_its_result() {
    let Some(server) = NatsServer::start("gather-cancel") else { return };
    let _worker = common::start_worker(&server, "gcancel", 2, ACK_WAIT);
    let pool = std::sync::Arc::new(gathered_pool(&server, "gcancel"));
    let mut on_gathering = 0;
    for i in 0..100u64 {
        let (tx, rx) = mpsc::channel();
        let (values, nested) = (tx.clone(), pool.clone());
        let map = pool.map_async(double, vec![i]).then(
            move |v: &[u64]| values.send(Heard::Values(v.to_vec())).unwrap(),
            move |e: &TaskError| {
                let cancelled = matches!(e, TaskError::Cancelled { .. });
                let gathering = on_gathering_thread();
                let handle = nested.apply_async(double, 1000 + i);
                // Waited for here, from wherever the callback runs but the client's
                // thread: the cancel may come just after the batch left, and the
                // result then fails as cancelled there (a callback that waits on the
                // client's thread waits for itself, as on a local pool's).
                let on_client = std::thread::current().name() == Some("multiproc-nats-client");
                let nested = if on_client { Nested::Later(handle) } else { Nested::Got(handle.get()) };
                tx.send(Heard::Failed { cancelled, gathering, nested }).unwrap();
            },
        );
        map.cancel();
        match rx.recv_timeout(common::PATIENCE).expect("the map's callback ran") {
            Heard::Values(v) => assert_eq!(v, [2 * i], "round {i}: done before its cancel"),
            Heard::Failed { cancelled, gathering, nested } => {
                assert!(cancelled, "round {i}: the map failed only by its cancel");
                let nested = match nested {
                    Nested::Got(r) => r,
                    Nested::Later(h) => h.get_timeout(common::PATIENCE),
                };
                assert_eq!(nested, Ok(2 * (1000 + i)), "round {i}: the callback's own submission");
                on_gathering += gathering as u32;
            }
        }
        assert!(rx.try_recv().is_err(), "round {i}: one callback, once");
    }
    eprintln!("error callbacks run on the gathering thread: {on_gathering} of 100");
    pool.close();
    pool.join().unwrap();
}

#[test]
fn a_terminated_pools_gathered_calls_fail_once_and_their_callbacks_resubmit_without_deadlock() {
    let Some(server) = NatsServer::start("gather-terminate") else { return };
    let _worker = common::start_worker(&server, "gterm", 2, ACK_WAIT);
    let pool = std::sync::Arc::new(gathered_pool(&server, "gterm"));
    let (tx, rx) = mpsc::channel();
    let n = 500u64;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (tx, nested) = (tx.clone(), pool.clone());
            let opts = TaskOptions::new().error_callback(move |e: &TaskError| {
                let terminated = matches!(e, TaskError::Terminated { .. });
                // The pool takes no more: refused at once, never waiting on anything.
                let again = nested.apply_async(double, i).get_timeout(common::PATIENCE);
                tx.send((i, terminated, on_gathering_thread(), again)).unwrap();
            });
            pool.apply_async_with(double, i, opts)
        })
        .collect();
    pool.terminate();
    drop(tx);

    let mut failed = Vec::new();
    for (i, h) in (0..n).zip(handles) {
        match h.get_timeout(common::PATIENCE) {
            Ok(v) => assert_eq!(v, 2 * i),
            Err(TaskError::Terminated { .. }) => failed.push(i),
            Err(e) => panic!("call {i}: {e}"),
        }
    }
    let mut heard: Vec<_> = rx.iter().collect();
    heard.sort_by_key(|h| h.0);
    assert_eq!(heard.iter().map(|h| h.0).collect::<Vec<_>>(), failed, "one error callback per failed call");
    let mut on_gathering = 0;
    for (i, terminated, gathering, again) in heard {
        assert!(terminated, "call {i}: failed by the termination");
        assert!(matches!(again, Err(TaskError::Closed { .. })), "call {i}'s callback's submission: {again:?}");
        on_gathering += gathering as u32;
    }
    eprintln!("{} of {n} calls terminated; error callbacks run on the gathering thread: {on_gathering}", failed.len());
    pool.join().unwrap();
}
