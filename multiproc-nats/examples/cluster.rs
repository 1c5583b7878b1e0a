//! The same tasks on many machines, through a NATS JetStream broker.
//!
//! ```sh
//! nats-server -js                                                  # the broker (terminal 1)
//! cargo run -p multiproc-nats --example cluster -- --worker        # a worker (terminal 2, 3, ... any machine)
//! cargo run -p multiproc-nats --example cluster -- 40              # submit 40 tasks (terminal 4)
//! ```
//!
//! Every program finds the broker in `MULTIPROC_NATS_URL` (default `nats://127.0.0.1:4222`;
//! credentials and TLS options go in the URL, e.g. `nats://user:password@host:4222`).
//! Workers must run this very binary: a worker of another build refuses the tasks.

use std::time::Duration;

use multiproc_nats::{BrokerConfig, Client, ClientConfig, RawTask, WorkerConfig};

/// Some CPU work: the number of Collatz steps from `n` down to 1.
fn collatz_steps(n: u64) -> u64 {
    let (mut n, mut steps) = (n.max(1), 0);
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First lines of main: a task process becomes its job here, and with
    // MULTIPROC_NATS_WORKER=1 the whole program would become a worker.
    multiproc::init();
    multiproc_nats::init();

    let broker = BrokerConfig::from_env()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--worker") {
        let config = WorkerConfig::from_env()?;
        println!("worker {} serving the default pool of {broker}; stop it with Ctrl-C", std::process::id());
        multiproc_nats::serve(config)?;
        return Ok(());
    }

    let count: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    println!("submitting {count} tasks to {broker}");
    let client = Client::connect(ClientConfig::from_env()?)?;
    let tasks = (1..=count).map(|i| RawTask::new(collatz_steps, &(i * 1_000_003)).expect("a u64 encodes"));
    let mut outcomes = client.imap(tasks, 64, true);
    let mut i = 0;
    loop {
        match outcomes.next_timeout(Duration::from_secs(30)) {
            Ok(Some(outcome)) => {
                i += 1;
                let place =
                    outcome.ran_on.as_ref().map(|r| format!("{} (task process {})", r, r.process_pid.unwrap_or(0)));
                match outcome.decode::<u64>() {
                    Ok(steps) => println!(
                        "collatz_steps({:>9}) = {steps:>4}   ran on worker {}",
                        i * 1_000_003,
                        place.unwrap_or_default()
                    ),
                    Err(e) => println!("{e}"),
                }
            }
            Ok(None) => break,
            Err(()) => {
                println!("no result for 30 s: is a worker running? start one with --worker");
                return Ok(());
            }
        }
    }
    let stats = client.stats();
    println!("{} results, {} duplicates dropped", stats.finished, stats.duplicates);
    Ok(())
}
