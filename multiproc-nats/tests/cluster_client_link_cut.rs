//! A client cut off from the broker for longer than the workers' result patience loses
//! nothing: workers store each result in the pool's result stream before they ack its
//! task, and the client, once its link is back, collects every result exactly once,
//! even when its results consumer was removed meanwhile; and the broker's word that it
//! gave up on a task reaches it too.
//!
//! The link runs through a small TCP proxy in this test, which the test cuts (every
//! connection closed, new ones refused) and restores.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::Process;
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, Client, ClientConfig, RawTask, RemoteError, WorkerConfig};

mod common;

multiproc_nats::test_init!();

const POOL: &str = "linkcut";
const TASKS: u64 = 300;
/// The workers' patience for storing a result: far shorter than the cut.
const RESULT_PATIENCE: Duration = Duration::from_secs(2);

fn square(n: u64) -> u64 {
    n * n
}

/// A TCP proxy from a loopback port to the broker, which can cut every link through it.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, links) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (cut2, links2) = (cut.clone(), links.clone());
        std::thread::spawn(move || {
            for down in listener.incoming() {
                let Ok(down) = down else { continue };
                if cut2.load(Ordering::SeqCst) {
                    let _ = down.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                links2.lock().unwrap().extend([down.try_clone().unwrap(), up.try_clone().unwrap()]);
                pipe(down.try_clone().unwrap(), up.try_clone().unwrap());
                pipe(up, down);
            }
        });
        Proxy { port, cut, links }
    }

    /// Closes every link through the proxy and refuses new ones until [`restore`](Proxy::restore).
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            let _ = link.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies bytes from `from` to `to` on a thread of its own, until either side ends.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// A worker whose result patience is short.
fn impatient_worker(url: String) {
    let config = WorkerConfig::new(BrokerConfig::parse(&url).unwrap())
        .queue(common::queue(POOL, Duration::from_secs(30)))
        .processes(2)
        .result_patience(RESULT_PATIENCE);
    if let Err(e) = multiproc_nats::serve(config) {
        eprintln!("test worker: {e}");
        std::process::exit(3);
    }
}

/// Waits until `what` holds, asking the broker directly (a hang guard panics after PATIENCE).
fn wait_for(what: &str, mut holds: impl FnMut() -> bool) {
    let started = Instant::now();
    while !holds() {
        assert!(started.elapsed() < common::PATIENCE, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn results_made_while_the_client_was_cut_off_all_arrive_once() {
    let Some(server) = NatsServer::start("link-cut") else { return };
    let proxy = Proxy::start(server.port());
    let through_proxy = BrokerConfig::parse(&format!("nats://127.0.0.1:{}", proxy.port)).unwrap();
    let client =
        Client::connect(ClientConfig::new(through_proxy).queue(common::queue(POOL, Duration::from_secs(30)))).unwrap();
    let handles: Vec<_> =
        (0..TASKS).map(|n| client.submit(multiproc_nats::RawTask::new(square, &n).unwrap()).unwrap()).collect();
    let direct = BrokerConfig::parse(&server.url()).unwrap();
    let queue = common::queue(POOL, Duration::from_secs(30));
    wait_for("every task on the queue", || multiproc_nats::status(&direct, &queue).unwrap().tasks == TASKS);

    proxy.cut();
    let cut_at = Instant::now();
    let mut worker = Process::new(impatient_worker, server.url()).daemon(true);
    worker.start().unwrap();
    let _worker = common::Worker(worker);
    // Every task ran and left the queue while the client could not hear of it.
    wait_for("every task done", || multiproc_nats::status(&direct, &queue).unwrap().tasks == 0);
    let status = multiproc_nats::status(&direct, &queue).unwrap();
    assert_eq!(status.results_waiting, TASKS, "the status shows the results kept for the client:\n{status}");
    // Its results consumer goes too, as the broker removes one unused for the client lease.
    remove_results_consumer(&server, client.id());
    assert_eq!(client.stats().finished, 0, "the client heard nothing while cut off");
    // The scenario: the cut lasts well beyond the workers' patience (a length of time
    // to let pass, not an event to wait for).
    std::thread::sleep((2 * RESULT_PATIENCE).saturating_sub(cut_at.elapsed()));

    proxy.restore();
    for (n, h) in (0..TASKS).zip(handles) {
        let outcome = h.wait_timeout(common::PATIENCE).expect("every result arrives (hang guard)");
        assert_eq!(outcome.decode::<u64>().unwrap(), square(n));
    }
    let stats = client.stats();
    assert_eq!((stats.finished, stats.lost, stats.past_deadline), (TASKS, 0, 0), "{stats:?}");
    assert_eq!(client.outstanding(), 0);
}

/// Removes client `id`'s results consumer, as the broker does once it is unused for
/// the client lease.
fn remove_results_consumer(server: &NatsServer, id: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let nats = async_nats::connect(server.url()).await.unwrap();
        let results = async_nats::jetstream::new(nats).get_stream(format!("MPROC_{POOL}_results")).await.unwrap();
        assert_eq!(results.get_info().await.unwrap().state.messages, TASKS, "every result is stored");
        results.delete_consumer(&format!("client-{id}")).await.unwrap();
    });
}

/// Kills the worker that runs it (the parent of the task's process).
fn kill_my_worker(_: ()) {
    let worker = multiproc::parent_process().expect("a task process has a worker").pid();
    let _ = std::process::Command::new("kill").args(["-9", &worker.to_string()]).status();
    std::thread::sleep(Duration::from_secs(3600));
}

#[test]
fn a_task_lost_while_the_client_was_cut_off_still_fails_as_lost() {
    let Some(server) = NatsServer::start("link-cut-lost") else { return };
    let proxy = Proxy::start(server.port());
    let through_proxy = BrokerConfig::parse(&format!("nats://127.0.0.1:{}", proxy.port)).unwrap();
    let ack_wait = Duration::from_millis(500);
    let queue = common::queue("linklost", ack_wait).max_deliver(1);
    let client = Client::connect(ClientConfig::new(through_proxy).queue(queue.clone())).unwrap();
    let handle = client.submit(RawTask::new(kill_my_worker, &()).unwrap()).unwrap();
    let direct = BrokerConfig::parse(&server.url()).unwrap();
    wait_for("the task on the queue", || multiproc_nats::status(&direct, &queue).unwrap().tasks == 1);

    proxy.cut();
    let killed = common::start_worker(&server, "linklost", 1, ack_wait);
    killed.0.join().unwrap();
    assert_eq!(killed.0.exitcode(), Some(-9), "the task killed its worker");
    // The broker gives up when a worker next asks for work.
    let _survivor = common::start_worker(&server, "linklost", 1, ack_wait);
    wait_for("the broker's word kept", || lost_words(&server) == 1);
    assert!(!handle.is_ready(), "the client heard nothing while cut off");

    proxy.restore();
    let outcome = handle.wait_timeout(common::PATIENCE).expect("the word reaches the client (hang guard)");
    assert_eq!(outcome.result.unwrap_err().error, RemoteError::Lost { deliveries: 1 });
    assert_eq!(client.stats().lost, 1);
}

/// How many words of lost tasks the pool's stream keeps.
fn lost_words(server: &NatsServer) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let nats = async_nats::connect(server.url()).await.unwrap();
        let lost = async_nats::jetstream::new(nats).get_stream("MPROC_linklost_lost").await.unwrap();
        lost.get_info().await.unwrap().state.messages
    })
}
