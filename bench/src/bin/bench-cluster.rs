//! The `cluster` impl: W1 and W3 on a `multiproc::Pool` from `multiproc_nats::ClusterPool`,
//! through one local `nats-server -js` (started here, on a free loopback port) and two
//! worker processes, each serving with a local pool of one process — so two processes
//! run tasks, as in the local pool's W1 and W3. The timed part is the same code as
//! `with_multiproc`'s: only the line that makes the pool differs.
#![deny(unsafe_code)]

use std::time::{Duration, Instant};

use multiproc::{Chunksize, MapOptions, Pool, Process, Queue};
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, ClientConfig, ClusterPool, PoolRunner, QueueConfig, WorkerConfig};

use multiproc_bench::args::{self, Args, Impl, Workload};
use multiproc_bench::work::{self, Outcome, RunResult};

const WORKERS: usize = 2;

fn main() {
    // The cluster's worker processes are this program started again.
    multiproc::init();
    multiproc_bench::main(Impl::Cluster, run);
}

fn run(a: &Args) -> RunResult {
    match a.workload {
        Workload::W1 | Workload::W2 | Workload::W3 => {}
        _ => return Ok(Outcome::Skipped("the cluster row has W1, W2 and W3 only".into())),
    }
    let Some(server) = NatsServer::start("bench") else {
        return Ok(Outcome::Skipped("nats-server is not installed".into()));
    };
    let ready = Queue::<u32>::new().map_err(err)?;
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let mut p = Process::new(serve, (server.url(), ready.clone())).daemon(true);
        p.start().map_err(err)?;
        workers.push(p);
    }
    for _ in 0..WORKERS {
        ready.get_timeout(Duration::from_secs(60)).map_err(|e| format!("a worker did not start: {e}"))?;
    }
    let pool = ClusterPool::with_client(ClientConfig::new(broker(&server.url())?).queue(queue()))
        .processes(WORKERS)
        .connect()
        .map_err(err)?;
    let r = match a.workload {
        Workload::W1 => w1(&pool, a),
        Workload::W2 => w2(&pool, a),
        _ => w3(&pool, a),
    };
    pool.close();
    pool.join().map_err(err)?;
    for w in &workers {
        let _ = w.kill();
        let _ = w.join();
    }
    r.map(|report| Outcome::Done(report.text("setup", "1 local nats-server, 2 workers x 1 pool process")))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn broker(url: &str) -> Result<BrokerConfig, String> {
    BrokerConfig::parse(url).map_err(err)
}

fn queue() -> QueueConfig {
    QueueConfig::default().pool("bench").expect("a valid pool name")
}

/// A worker process: a local pool of one process, serving until killed.
fn serve((url, ready): (String, Queue<u32>)) {
    let run = || -> Result<(), String> {
        let runner = PoolRunner::start(1).map_err(err)?;
        let config = WorkerConfig::new(broker(&url)?).queue(queue());
        let worker = multiproc_nats::start_worker(config, std::sync::Arc::new(runner)).map_err(err)?;
        ready.put(std::process::id()).map_err(err)?;
        worker.join().map_err(err)
    };
    if let Err(e) = run() {
        eprintln!("bench-cluster worker: {e}");
        std::process::exit(3);
    }
}

/// Every worker's pool runs one task first, as on the Python side.
fn warm(pool: &Pool) -> Result<(), String> {
    let opts = MapOptions::new().chunksize(Chunksize::Fixed(1));
    pool.map_async_with(work::warm_task, vec![(); 4 * WORKERS], &opts).get().map_err(err)?;
    Ok(())
}

/// W1: `map(f, 0..n)` with the given chunk size.
fn w1(pool: &Pool, a: &Args) -> Result<multiproc_bench::report::Report, String> {
    warm(pool)?;
    let opts = MapOptions::new().chunksize(match a.chunksize {
        args::Chunksize::Default => Chunksize::Default,
        args::Chunksize::Fixed(n) => Chunksize::Fixed(n),
    });
    let t = Instant::now();
    let out = pool.map_async_with(work::f, 0..a.n as u64, &opts).get().map_err(err)?;
    let took = t.elapsed();
    Ok(work::rate_report(a.n, took, work::doubled(&out, a.n)).text("chunksize", a.chunksize.label()))
}

/// W2: `n` `apply` one after the other: a task's round trip through the broker (the
/// client's publish, a worker's pull, its local pool, the stored result, the client's read).
fn w2(pool: &Pool, a: &Args) -> Result<multiproc_bench::report::Report, String> {
    warm(pool)?;
    work::apply_round_trips(pool, a.n)
}

/// W3: `n` `apply_async` submitted, then every `get` in order.
fn w3(pool: &Pool, a: &Args) -> Result<multiproc_bench::report::Report, String> {
    warm(pool)?;
    let t = Instant::now();
    let handles: Vec<_> = (0..a.n as u64).map(|i| pool.apply_async(work::f, i)).collect();
    let out = handles.into_iter().map(|h| h.get()).collect::<Result<Vec<u64>, _>>().map_err(err)?;
    let took = t.elapsed();
    Ok(work::rate_report(a.n, took, work::doubled(&out, a.n)))
}
