//! The same program on a local `Pool` and on a cluster pool (two worker processes behind
//! one broker): every call gives the same results, through the very same type — only the
//! line that makes the pool differs.

use std::collections::HashSet;

use multiproc::{Chunksize, MapOptions, Pool, TaskError, TaskOptions};
use multiproc_nats::ClusterPool;
use multiproc_nats::testing::NatsServer;

mod common;

multiproc_nats::test_init!();

fn square(x: u64) -> u64 {
    x * x
}

fn label(name: String, n: u32) -> String {
    format!("{name}-{n}")
}

fn picky(x: u32) -> u32 {
    assert!(x % 7 != 3, "no {x}");
    x
}

fn where_am_i(x: u64) -> (u64, u32) {
    (x, common::worker_of_this_task())
}

/// Everything a program does with a pool; it neither knows nor cares where it runs.
fn program(pool: &Pool) -> Vec<String> {
    let mut seen = Vec::new();
    seen.push(format!("apply {:?}", pool.apply(square, 7)));
    let handles: Vec<_> = (0..20).map(|i| pool.apply_async(square, i)).collect();
    seen.push(format!("apply_async {:?}", handles.into_iter().map(|h| h.get()).collect::<Vec<_>>()));
    let (tx, rx) = std::sync::mpsc::channel();
    let h = pool.apply_async_with(square, 9, TaskOptions::new().callback(move |v: &u64| tx.send(*v).unwrap()));
    seen.push(format!("callback {:?} {:?}", h.get(), rx.recv()));
    seen.push(format!("map {:?}", pool.map(square, 0..1000)));
    let one_by_one = MapOptions::new().chunksize(Chunksize::Fixed(1));
    seen.push(format!("map chunksize 1 {:?}", pool.map_async_with(square, 0..300, &one_by_one).get()));
    let adaptive = MapOptions::new().chunksize(Chunksize::Adaptive);
    seen.push(format!("map adaptive {:?}", pool.map_async_with(square, 0..300, &adaptive).get()));
    seen.push(format!("imap {:?}", pool.imap(square, 0..300).collect::<Result<Vec<_>, TaskError>>()));
    let firsts: Vec<u64> = pool.imap(square, 1..).take(5).map(Result::unwrap).collect();
    seen.push(format!("imap endless {firsts:?}"));
    let mut unordered: Vec<u64> = pool.imap_unordered(square, 0..300).map(Result::unwrap).collect();
    unordered.sort();
    seen.push(format!("imap_unordered {unordered:?}"));
    let pairs = (0..50).map(|i| (format!("n{i}"), i));
    seen.push(format!("starmap {:?}", pool.starmap(label, pairs)));
    // One failure loses nothing else; `map` gives the first error in input order.
    let all = pool.map_results(picky, 0..30);
    let shown: Vec<String> = all
        .iter()
        .map(|r| match r {
            Ok(v) => v.to_string(),
            Err(TaskError::Panicked { message, .. }) => format!("panicked: {message}"),
            Err(e) => format!("other: {e}"),
        })
        .collect();
    seen.push(format!("map_results {shown:?}"));
    match pool.map(picky, 0..30) {
        Err(TaskError::Panicked { task, message, .. }) => seen.push(format!("map error {task} {message}")),
        other => seen.push(format!("map error? {other:?}")),
    }
    seen
}

#[test]
fn a_program_gives_the_same_results_on_a_local_and_a_cluster_pool() {
    let Some(server) = NatsServer::start("same-results") else { return };
    let ack_wait = std::time::Duration::from_secs(30);
    let workers =
        [common::start_worker(&server, "same", 2, ack_wait), common::start_worker(&server, "same", 2, ack_wait)];

    let local = Pool::new(2).unwrap();
    let on_one_machine = program(&local);
    local.close();
    local.join().unwrap();

    let cluster = common::cluster_pool(&server, "same", ack_wait, 4);
    let on_the_cluster = program(&cluster);
    for (a, b) in on_one_machine.iter().zip(&on_the_cluster) {
        assert_eq!(a, b);
    }
    assert_eq!(on_one_machine.len(), on_the_cluster.len());

    // The work was spread over both workers, each running it in its own local pool.
    let placed = cluster.map_async_with(where_am_i, 0..400, &MapOptions::new().chunksize(Chunksize::Fixed(1))).get();
    let ran_on: HashSet<u32> = placed.unwrap().into_iter().map(|(_, w)| w).collect();
    let worker_pids: HashSet<u32> = workers.iter().map(|w| w.pid()).collect();
    assert!(!ran_on.is_empty() && ran_on.is_subset(&worker_pids), "{ran_on:?} within {worker_pids:?}");

    let stats = cluster.stats();
    assert_eq!(stats.tasks_panicked, 8, "{stats:?}");
    assert!(stats.tasks_done > 2000, "{stats:?}");
    let client = ClusterPool::client_stats(&cluster).expect("a cluster pool has a client");
    assert_eq!(client.duplicates, 0);
    cluster.close();
    cluster.join().unwrap();
    assert!(matches!(cluster.apply(square, 1), Err(TaskError::Closed { .. })));
    assert!(ClusterPool::client_stats(&Pool::new(1).unwrap()).is_none());
}
