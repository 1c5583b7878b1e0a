//! Many tasks through one broker and two worker processes: every result comes back to
//! its caller once, correct, with the worker that ran it; `imap` keeps its window and
//! its order, and pulls an endless input lazily.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use multiproc_nats::RawTask;
use multiproc_nats::testing::NatsServer;

mod common;

multiproc_nats::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

const ACK_WAIT: Duration = Duration::from_secs(30);

#[test]
fn thousands_of_tasks_in_flight_each_come_back_once() {
    let Some(server) = NatsServer::start("round-trip") else { return };
    let workers = [common::start_worker(&server, "rt", 2, ACK_WAIT), common::start_worker(&server, "rt", 2, ACK_WAIT)];
    let worker_pids: HashSet<u32> = workers.iter().map(|w| w.pid()).collect();
    let client = common::client(&server, "rt", ACK_WAIT);
    let n = 2000u64;
    let handles: Vec<_> = (0..n).map(|i| client.submit(RawTask::new(square, &i).unwrap()).unwrap()).collect();
    assert!(client.outstanding() > 0);
    let mut ran_on = HashSet::new();
    for (i, h) in handles.into_iter().enumerate() {
        let outcome = h.wait_timeout(common::PATIENCE).expect("every task comes back");
        assert_eq!(outcome.decode::<u64>().unwrap(), (i as u64) * (i as u64));
        let where_ = outcome.ran_on.expect("a worker ran it");
        assert!(worker_pids.contains(&where_.worker_pid), "{where_:?} is one of our workers");
        assert!(where_.process_pid.is_some_and(|p| !worker_pids.contains(&p)), "it ran in a child of the worker");
        ran_on.insert(where_.worker_pid);
    }
    let stats = client.stats();
    assert_eq!((stats.submitted, stats.finished, stats.duplicates), (n, n, 0));
    assert_eq!(client.outstanding(), 0);
    assert!(!ran_on.is_empty());
}

#[test]
fn imap_is_lazy_bounded_and_ordered() {
    let Some(server) = NatsServer::start("imap") else { return };
    let _workers = [common::start_worker(&server, "im", 3, ACK_WAIT)];
    let client = common::client(&server, "im", ACK_WAIT);

    // In order, over an input that counts what was pulled from it.
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let window = 8;
    let input = (0..300u64).map(move |i| {
        counter.fetch_add(1, Ordering::SeqCst);
        RawTask::new(square, &i).unwrap()
    });
    let mut outcomes = client.imap(input, window, true);
    let mut got = 0u64;
    while let Some(o) = outcomes.next() {
        assert_eq!(o.decode::<u64>().unwrap(), got * got, "in input order");
        got += 1;
        assert!(outcomes.in_window() <= window);
        assert!(pulled.load(Ordering::SeqCst) <= got as usize + window, "the input is pulled lazily");
    }
    assert_eq!(got, 300);

    // Unordered, over an endless input: take what is needed and stop.
    let endless = (0u64..).map(|i| RawTask::new(square, &i).unwrap());
    let mut firsts: Vec<u64> = client.imap(endless, 16, false).take(100).map(|o| o.decode::<u64>().unwrap()).collect();
    firsts.sort();
    assert!(firsts.iter().all(|v| (*v as f64).sqrt().fract() == 0.0));
    assert_eq!(firsts.len(), 100);
}
