//! Prints the pool's queue as the broker sees it: tasks waiting and in flight per build.
//! It only reads: it creates nothing on the broker.
//!
//! ```text
//! MULTIPROC_NATS_URL=nats://broker:4222 MULTIPROC_NATS_POOL=default \
//!     cargo run -p multiproc-nats --example status
//! ```

use multiproc_nats::{BrokerConfig, ClusterError, QueueConfig};

fn main() {
    let status = BrokerConfig::from_env()
        .and_then(|broker| Ok((broker, QueueConfig::from_env()?)))
        .map_err(ClusterError::from)
        .and_then(|(broker, queue)| multiproc_nats::status(&broker, &queue));
    match status {
        Ok(status) => print!("{status}"),
        Err(e) => {
            eprintln!("status: {e}");
            std::process::exit(1);
        }
    }
}
