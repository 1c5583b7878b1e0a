//! The same pool calls on many machines, through a NATS JetStream broker.
//!
//! ```sh
//! nats-server -js -a 127.0.0.1                                    # the broker (terminal 1), this machine only
//! cargo run -p multiproc-nats --example cluster -- --worker        # a worker (terminal 2, 3, ... any machine)
//! cargo run -p multiproc-nats --example cluster -- 40              # a map of 40 tasks on the cluster (terminal 4)
//! cargo run -p multiproc-nats --example cluster -- 40 --local      # the same map on a local pool
//! ```
//!
//! Every program finds the broker in `MULTIPROC_NATS_URL` (default `nats://127.0.0.1:4222`;
//! credentials and TLS options go in the URL, e.g. `nats://user:password@host:4222`).
//! A worker takes its settings from the environment too, e.g. `MULTIPROC_NATS_PROCESSES=4`
//! and `MULTIPROC_NATS_MAX_ARGS_BYTES=1GiB` (at most that much of large arguments held at
//! once). Workers must run this very binary: a worker of another build refuses the tasks.
//! A broker reachable from other machines needs credentials and TLS (`nats-server -js
//! --user u --pass p --tls ...`): whoever may publish tasks can make workers run any
//! function of this binary.

use std::collections::BTreeMap;
use std::time::Duration;

use multiproc::Pool;
use multiproc_nats::{BrokerConfig, ClusterPool, WorkerConfig};

/// Some CPU work — the number of Collatz steps from `n` down to 1 — and where it ran:
/// the host and pid of the process whose pool ran it (a cluster worker, or this program).
fn collatz_steps(n: u64) -> (u64, u64, String) {
    let (mut x, mut steps) = (n.max(1), 0);
    while x != 1 {
        x = if x % 2 == 0 { x / 2 } else { 3 * x + 1 };
        steps += 1;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let pool_owner = multiproc::parent_process().map(|p| p.pid()).unwrap_or(0);
    (n, steps, format!("{}:{pool_owner}", host.trim()))
}

fn main() {
    // First lines of main: a pool process becomes its job here, and with
    // MULTIPROC_NATS_WORKER=1 the whole program would become a worker.
    multiproc::init();
    multiproc_nats::init();
    // Errors print for people (their Display), not as a Debug dump.
    if let Err(e) = run() {
        eprintln!("cluster: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--worker") {
        let config = WorkerConfig::from_env()?;
        let broker = BrokerConfig::from_env()?;
        println!("worker {} serving the pool's queue on {broker}; stop it with Ctrl-C", std::process::id());
        multiproc_nats::serve(config)?;
        return Ok(());
    }
    let count: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(20);

    // The one line that differs between one machine and a cluster.
    let pool: Pool = if args.iter().any(|a| a == "--local") {
        Pool::new(4)?
    } else {
        ClusterPool::from_env()?.processes(8).connect()?
    };

    println!(
        "map of {count} tasks on {}",
        if args.iter().any(|a| a == "--local") { "a local pool" } else { "the cluster" }
    );
    let pending = pool.map_async(collatz_steps, (1..=count).map(|i| i * 1_000_003));
    if !pending.wait_timeout(Duration::from_secs(30)) {
        println!("no results after 30 s: is a worker running? start one with --worker");
        pool.terminate();
        return Ok(());
    }
    let mut per_worker = BTreeMap::new();
    for (n, steps, ran_on) in pending.get()? {
        println!("collatz_steps({n:>9}) = {steps:>4}   ran on {ran_on}");
        *per_worker.entry(ran_on).or_insert(0) += 1;
    }
    for (worker, tasks) in per_worker {
        println!("{worker}: {tasks} tasks");
    }
    pool.close();
    pool.join()?;
    Ok(())
}
