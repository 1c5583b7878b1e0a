//! A worker SIGKILLed in the middle of a task message of many items: the results of the
//! items it had finished were stored as it went, so the worker that takes the
//! redelivery runs only the items without a result. Each item's result reaches the
//! caller exactly once, and the finished items never run again.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use multiproc::{Chunksize, MapOptions, Process};
use multiproc_nats::testing::{NatsServer, noted_items, progress_subjects};
use multiproc_nats::{BrokerConfig, ClusterPool, PoolRunner, WorkerConfig};

mod common;

multiproc_nats::test_init!();

/// Short, so the dead worker's task comes back quickly (and its batches go often).
const ACK_WAIT: Duration = Duration::from_secs(1);

/// Items in the map.
const ITEMS: u64 = 40;
/// The item that holds its worker until the test kills it.
const HELD: u64 = 5;

/// One item: notes that it ran (a line in its own file under `dir`), works a little,
/// reports at the
/// rendezvous and waits for the test's word when it is the held one, and returns its
/// square.
fn record((dir, socket, i): (String, String, u64)) -> u64 {
    use std::io::Read;
    let worker = common::worker_of_this_task();
    let mut runs = std::fs::OpenOptions::new().create(true).append(true).open(format!("{dir}/{i}")).unwrap();
    writeln!(runs, "{worker}").unwrap();
    // Work of a few milliseconds: a local pool's process sends a result at once when its
    // task took longer than its batching window of 200 µs (a result that quick waits,
    // with more tasks queued, until the next task ends: here the held one); and a pool
    // left to cut by measured time gives items over 2 ms a task each.
    std::thread::sleep(Duration::from_millis(3));
    if i == HELD {
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        writeln!(s, "{worker}").unwrap();
        let mut go = [0u8; 1];
        let _ = s.read(&mut go);
    }
    i * i
}

/// Waits for a worker's note that items `0..n` have their results stored (the worker
/// that takes the redelivery reads it): each note follows the results it names.
fn wait_for_note(rt: &tokio::runtime::Runtime, notes: &mut async_nats::Subscriber, n: u32) {
    loop {
        let note = rt.block_on(async { tokio::time::timeout(common::PATIENCE, notes.next()).await });
        let note = note.ok().flatten().expect("a worker notes which items have their results stored");
        let runs = noted_items(&note.payload).expect("a progress note");
        if runs.iter().any(|&(first, count)| first == 0 && count >= n) {
            return;
        }
    }
}

/// How many times item `i` ran.
fn runs(dir: &std::path::Path, i: u64) -> usize {
    std::fs::read_to_string(dir.join(i.to_string())).map(|s| s.lines().count()).unwrap_or(0)
}

/// A worker process that holds one task message at a time (a local pool of one
/// process): the first worker takes only the map's first message, so every note it
/// writes is about that message.
fn one_message_worker((url, pool, _, ack_wait_ms): common::WorkerArgs) {
    let config = WorkerConfig::new(BrokerConfig::parse(&url).unwrap())
        .queue(common::queue(&pool, Duration::from_millis(ack_wait_ms)));
    let runner = PoolRunner::start(1).expect("a local pool starts").slots(1);
    let worker = multiproc_nats::start_worker(config, Arc::new(runner)).expect("the worker starts");
    let _ = worker.join();
}

fn start_worker(server: &NatsServer, pool: &str) -> common::Worker {
    let args: common::WorkerArgs = (server.url(), pool.into(), 1, ACK_WAIT.as_millis() as u64);
    let mut p = Process::new(one_message_worker, args).name("worker-unfinished").daemon(true);
    p.start().expect("a worker process starts");
    common::Worker(p)
}

/// One item per local task; on a pool of one process, a map goes in four messages of a
/// quarter of its items: the first holds items 0..10, the held one among them.
#[test]
fn a_redelivered_task_runs_only_the_items_without_a_stored_result() {
    redelivery_runs_only_unfinished("unfinished", &MapOptions::new().chunksize(Chunksize::Fixed(1)));
}

/// The default chunksize makes each message one chunk of 10 items. Its worker's local
/// pool cuts it by measured time instead (a chunk being no one's choice here), so the
/// items finished before the held one have their results stored as they end.
#[test]
fn a_default_chunksize_map_is_redelivered_only_in_its_unfinished_items() {
    redelivery_runs_only_unfinished("unfinished-default", &MapOptions::new());
}

fn redelivery_runs_only_unfinished(name: &str, opts: &MapOptions) {
    let Some(server) = NatsServer::start(&format!("redelivery-{name}")) else { return };
    let dir = std::env::temp_dir().join(format!("mpn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rendezvous = common::Rendezvous::new(name);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut notes = rt.block_on(async {
        let nats = async_nats::connect(server.url()).await.unwrap();
        nats.subscribe(progress_subjects(&common::queue(name, ACK_WAIT))).await.unwrap()
    });
    let pool = common::cluster_pool(&server, name, ACK_WAIT, 1);
    let first = start_worker(&server, name);

    let (where_to, socket) = (dir.display().to_string(), rendezvous.path.display().to_string());
    let args: Vec<_> = (0..ITEMS).map(|i| (where_to.clone(), socket.clone(), i)).collect();
    let map = pool.map_async_with(record, args, opts);
    let (_held, who) = rendezvous.accept();
    assert_eq!(who, first.pid().to_string(), "the first worker runs the held item");
    // While it is held, the items before it have their results stored, and noted.
    wait_for_note(&rt, &mut notes, HELD as u32);

    first.kill();
    let second = start_worker(&server, name);
    let (mut held, who) = rendezvous.accept();
    assert_eq!(who, second.pid().to_string(), "the held item came back, to the second worker");
    held.write_all(b"g").unwrap();
    assert_eq!(map.get().unwrap(), (0..ITEMS).map(|i| i * i).collect::<Vec<_>>(), "every result, once, in order");

    for i in 0..HELD {
        assert_eq!(runs(&dir, i), 1, "item {i} had its result stored before the kill: it never ran again");
    }
    assert_eq!(runs(&dir, HELD), 2, "the held item ran on both workers");
    for i in HELD + 1..ITEMS {
        assert_eq!(runs(&dir, i), 1, "item {i} ran once, on the second worker");
    }
    pool.close();
    pool.join().unwrap();
    let stats = pool.stats();
    assert_eq!((stats.tasks_done, stats.tasks_failed()), (ITEMS, 0), "each item counted once: {stats:?}");
    let client = ClusterPool::client_stats(&pool).unwrap();
    assert_eq!(client.submitted, client.finished, "{client:?}");
    let progress = format!("MPROC_{}_progress", common::queue(name, ACK_WAIT).pool_name());
    wait_until_empty(&rt, &server, &progress);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until the stream `name` holds no message: a task's progress note goes once the
/// task is acked, which follows its last result a little after the caller has it.
fn wait_until_empty(rt: &tokio::runtime::Runtime, server: &NatsServer, name: &str) {
    let js = rt.block_on(async { async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap()) });
    let deadline = std::time::Instant::now() + common::PATIENCE;
    loop {
        let left = rt.block_on(async { js.get_stream(name).await.unwrap().info().await.unwrap().state.messages });
        if left == 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{left} progress notes outlived their acked tasks in {name}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
