//! How a worker connects and how much it runs at once.

use std::time::Duration;

use crate::config::{BrokerConfig, ConfigError, QueueConfig, parse_seconds};

/// The environment variable giving the number of processes a worker runs tasks in
/// (default: the CPU count).
pub const PROCESSES_ENV: &str = "MULTIPROC_NATS_PROCESSES";

/// The environment variable giving a worker's result patience in seconds (see
/// [`WorkerConfig::result_patience`]).
pub const RESULT_PATIENCE_ENV: &str = "MULTIPROC_NATS_RESULT_PATIENCE";

/// How a worker connects and how much it runs at once.
///
/// ```
/// use multiproc_nats::{BrokerConfig, QueueConfig, WorkerConfig};
///
/// let config = WorkerConfig::new(BrokerConfig::parse("nats://broker.example:4222")?)
///     .queue(QueueConfig::default().pool("render")?)
///     .processes(8); // the worker's local pool
/// # drop(config);
/// # Ok::<(), multiproc_nats::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub(crate) broker: BrokerConfig,
    pub(crate) queue: QueueConfig,
    pub(crate) processes: usize,
    pub(crate) pull_expiry: Duration,
    pub(crate) result_patience: Duration,
}

impl WorkerConfig {
    /// A worker of the default pool on `broker`, with one process per CPU.
    ///
    /// ```
    /// use multiproc_nats::{BrokerConfig, QueueConfig, WorkerConfig};
    /// use std::time::Duration;
    ///
    /// let w = WorkerConfig::new(BrokerConfig::parse("nats://broker.example")?);
    /// # drop(w);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn new(broker: BrokerConfig) -> WorkerConfig {
        WorkerConfig {
            broker,
            queue: QueueConfig::default(),
            processes: multiproc::cpu_count(),
            pull_expiry: Duration::from_secs(5),
            result_patience: Duration::from_secs(60),
        }
    }

    /// Everything from the environment: the broker from `MULTIPROC_NATS_URL`, the pool
    /// and its settings as [`QueueConfig::from_env`] reads them, the processes from
    /// `MULTIPROC_NATS_PROCESSES`, the result patience from
    /// `MULTIPROC_NATS_RESULT_PATIENCE` (seconds).
    ///
    /// ```
    /// use multiproc_nats::{BrokerConfig, QueueConfig, WorkerConfig};
    /// use std::time::Duration;
    ///
    /// let w = WorkerConfig::from_env()?; // MULTIPROC_NATS_URL, _POOL, _PROCESSES, ...
    /// # drop(w);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn from_env() -> Result<WorkerConfig, ConfigError> {
        let mut c = WorkerConfig::new(BrokerConfig::from_env()?).queue(QueueConfig::from_env()?);
        if let Ok(s) = std::env::var(PROCESSES_ENV) {
            c = c.processes(parse_processes(&s)?);
        }
        if let Ok(s) = std::env::var(RESULT_PATIENCE_ENV) {
            c = c.result_patience(parse_seconds(RESULT_PATIENCE_ENV, &s)?);
        }
        Ok(c)
    }

    /// Serves this pool's queue (the pool's settings apply if this worker creates it).
    ///
    /// ```
    /// use multiproc_nats::{BrokerConfig, QueueConfig, WorkerConfig};
    /// use std::time::Duration;
    ///
    /// let w = WorkerConfig::from_env()?.queue(QueueConfig::default().pool("render")?);
    /// # drop(w);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn queue(mut self, queue: QueueConfig) -> WorkerConfig {
        self.queue = queue;
        self
    }

    /// How many processes run tasks at once: the size of the local pool
    /// [`serve`](crate::serve) starts (default: the CPU count).
    ///
    /// ```
    /// use multiproc_nats::{BrokerConfig, QueueConfig, WorkerConfig};
    /// use std::time::Duration;
    ///
    /// let w = WorkerConfig::from_env()?.processes(16);
    /// # drop(w);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn processes(mut self, n: usize) -> WorkerConfig {
        self.processes = n.max(1);
        self
    }

    /// How long the worker keeps trying to store a result for its client while the
    /// broker does not confirm it (it may be restarting) before it puts the task back on
    /// the queue, for another try (default 60 s). A client away does not count: its
    /// results wait for it in the broker.
    ///
    /// ```
    /// use multiproc_nats::{BrokerConfig, QueueConfig, WorkerConfig};
    /// use std::time::Duration;
    ///
    /// let w = WorkerConfig::from_env()?.result_patience(Duration::from_secs(120));
    /// # drop(w);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn result_patience(mut self, d: Duration) -> WorkerConfig {
        self.result_patience = d;
        self
    }
}

/// The value of [`PROCESSES_ENV`].
fn parse_processes(s: &str) -> Result<usize, ConfigError> {
    s.trim().parse().map_err(|_| ConfigError::new(format!("{PROCESSES_ENV}={s} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_from_the_environment_must_be_a_number() {
        assert_eq!(parse_processes(" 3 "), Ok(3));
        let e = parse_processes("three").unwrap_err().to_string();
        assert!(e.contains("MULTIPROC_NATS_PROCESSES=three is not a number"), "{e}");
    }
}
