//! How a worker connects, how much it runs at once, and how its local pool's processes
//! are isolated.

use std::time::Duration;

use multiproc::{Contain, Limits};

use crate::config::{BrokerConfig, ConfigError, QueueConfig, parse_bytes, parse_seconds};

/// The environment variable giving the number of processes a worker runs tasks in
/// (default: the CPU count).
pub const PROCESSES_ENV: &str = "MULTIPROC_NATS_PROCESSES";

/// The environment variable giving a worker's result patience in seconds (see
/// [`WorkerConfig::result_patience`]).
pub const RESULT_PATIENCE_ENV: &str = "MULTIPROC_NATS_RESULT_PATIENCE";

/// The environment variable giving a worker's cap on the bytes of large task arguments
/// it holds at once (see [`WorkerConfig::max_args_bytes`]): a number of bytes, or one
/// with a unit, `KiB`, `MiB` or `GiB` (`512MiB`).
pub const MAX_ARGS_BYTES_ENV: &str = "MULTIPROC_NATS_MAX_ARGS_BYTES";

/// The environment variable giving the sandbox of a worker's local pool (feature
/// `sandbox`), as a comma-separated list of rules: `no-network`, `no-exec`, `no-ptrace`,
/// `read-only-syscalls`, `private-network`, `read-only=PATH`, `read-write=PATH`,
/// `best-effort`; e.g. `MULTIPROC_NATS_SANDBOX=no-network,no-exec,best-effort`. See
/// [`WorkerConfig::sandbox`].
pub const SANDBOX_ENV: &str = "MULTIPROC_NATS_SANDBOX";

/// How a worker connects, how much it runs at once, and how the processes of its local
/// pool are isolated ([`contain`](WorkerConfig::contain), [`limits`](WorkerConfig::limits),
/// [`sandbox`](WorkerConfig::sandbox): what [`serve`](crate::serve) builds its pool with; a
/// worker's heartbeat, in [`status()`](crate::status), says what is in effect).
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
    pub(crate) contain: Contain,
    pub(crate) limits: Limits,
    pub(crate) max_args_bytes: Option<u64>,
    #[cfg(feature = "sandbox")]
    pub(crate) sandbox: Option<multiproc::Sandbox>,
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
            contain: Contain::Auto,
            limits: Limits::new(),
            max_args_bytes: None,
            #[cfg(feature = "sandbox")]
            sandbox: None,
        }
    }

    /// Everything from the environment: the broker from `MULTIPROC_NATS_URL`, the pool
    /// and its settings as [`QueueConfig::from_env`] reads them, the processes from
    /// `MULTIPROC_NATS_PROCESSES`, the result patience from
    /// `MULTIPROC_NATS_RESULT_PATIENCE` (seconds), the local pool's sandbox from
    /// `MULTIPROC_NATS_SANDBOX` ([`SANDBOX_ENV`]; feature `sandbox`: without it, setting
    /// the variable is an error rather than a worker silently unconfined). Containment
    /// comes from `MULTIPROC_CONTAIN` (`auto`, `cgroup`, `process-tree`, `off`), which
    /// `multiproc` reads itself; limits are set in code only.
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
        if let Ok(s) = std::env::var(MAX_ARGS_BYTES_ENV) {
            c = c.max_args_bytes(parse_bytes(MAX_ARGS_BYTES_ENV, &s)?);
        }
        if let Ok(s) = std::env::var(SANDBOX_ENV)
            && !s.trim().is_empty()
        {
            c = sandbox_from_env(c, &s)?;
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

    /// The most bytes of large task arguments the worker holds in memory at once
    /// (default: no cap; `MULTIPROC_NATS_MAX_ARGS_BYTES` from the environment).
    ///
    /// Arguments too large for a message travel through the pool's object store, and
    /// the worker reads a task's whole before it runs, one task per slot. Under a cap, a
    /// task's arguments are read only once they fit beside those held; until then the
    /// task waits in this worker, in order of arrival, and counts in
    /// [`WorkerStats::args_waited`](crate::status::WorkerStats::args_waited). A task
    /// whose arguments alone exceed the cap runs alone: a cap never keeps a task from
    /// running. Arguments that fit in a message are not counted.
    ///
    /// ```
    /// use multiproc_nats::{BrokerConfig, WorkerConfig};
    ///
    /// // 16 processes, but never more than 2 GiB of arguments read at once.
    /// let w = WorkerConfig::from_env()?.processes(16).max_args_bytes(2 << 30);
    /// # drop(w);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    pub fn max_args_bytes(mut self, bytes: u64) -> WorkerConfig {
        self.max_args_bytes = Some(bytes);
        self
    }

    /// How the descendants of the local pool's processes are contained (default
    /// [`Contain::Auto`]; `MULTIPROC_CONTAIN` in the environment may choose instead): see
    /// [`multiproc::PoolBuilder::contain`].
    pub fn contain(mut self, contain: Contain) -> WorkerConfig {
        self.contain = contain;
        self
    }

    /// Resource limits for each process of the local pool (CPU time, open files, ...): see
    /// [`multiproc::PoolBuilder::limits`]. A task a limit ends fails with
    /// `WorkerDied` naming the limit, and the worker goes on.
    pub fn limits(mut self, limits: Limits) -> WorkerConfig {
        self.limits = limits;
        self
    }

    /// Confines each process of the local pool with `sandbox` (feature `sandbox`): see
    /// [`multiproc::PoolBuilder::sandbox`]. A task that breaks it fails with `WorkerDied`
    /// whose message names the rule ("sandbox: `execve` denied (no exec)"), the local pool
    /// replaces the process, and the worker goes on. [`serve`](crate::serve) fails to start
    /// where the kernel lacks what the sandbox needs, unless it asks for best effort.
    /// The worker itself (its broker connection) is not confined.
    ///
    /// ```
    /// use multiproc_nats::{BrokerConfig, WorkerConfig};
    ///
    /// let config = WorkerConfig::new(BrokerConfig::parse("nats://broker.example:4222")?)
    ///     .sandbox(multiproc::Sandbox::new().no_network().no_exec().best_effort(true));
    /// # drop(config);
    /// # Ok::<(), multiproc_nats::ConfigError>(())
    /// ```
    #[cfg(feature = "sandbox")]
    pub fn sandbox(mut self, sandbox: multiproc::Sandbox) -> WorkerConfig {
        self.sandbox = Some(sandbox);
        self
    }

    /// The local pool [`serve`](crate::serve) runs tasks on: `processes`, containment,
    /// limits and sandbox as configured.
    pub(crate) fn local_pool(&self) -> Result<multiproc::Pool, multiproc::PoolError> {
        let builder =
            multiproc::Pool::builder().processes(self.processes).contain(self.contain).limits(self.limits.clone());
        #[cfg(feature = "sandbox")]
        let builder = match &self.sandbox {
            Some(s) => builder.sandbox(s.clone()),
            None => builder,
        };
        builder.build()
    }
}

/// `config` with the sandbox `MULTIPROC_NATS_SANDBOX=s` asks for.
#[cfg(feature = "sandbox")]
fn sandbox_from_env(config: WorkerConfig, s: &str) -> Result<WorkerConfig, ConfigError> {
    Ok(config.sandbox(parse_sandbox(s)?))
}

/// Without the `sandbox` feature a sandbox cannot be had: say so.
#[cfg(not(feature = "sandbox"))]
fn sandbox_from_env(_config: WorkerConfig, s: &str) -> Result<WorkerConfig, ConfigError> {
    Err(ConfigError::new(format!(
        "{SANDBOX_ENV}={s} needs multiproc-nats built with its `sandbox` feature; this build has none"
    )))
}

/// The value of [`SANDBOX_ENV`]: comma-separated rules.
#[cfg(feature = "sandbox")]
fn parse_sandbox(s: &str) -> Result<multiproc::Sandbox, ConfigError> {
    let mut sandbox = multiproc::Sandbox::new();
    for rule in s.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        sandbox = match rule.split_once('=') {
            Some(("read-only", path)) if !path.is_empty() => sandbox.read_only(path),
            Some(("read-write", path)) if !path.is_empty() => sandbox.read_write(path),
            None if rule == "no-network" => sandbox.no_network(),
            None if rule == "no-exec" => sandbox.no_exec(),
            None if rule == "no-ptrace" => sandbox.no_ptrace(),
            None if rule == "read-only-syscalls" => sandbox.read_only_syscalls(),
            None if rule == "private-network" => sandbox.private_network(),
            None if rule == "best-effort" => sandbox.best_effort(true),
            _ => {
                return Err(ConfigError::new(format!(
                    "{SANDBOX_ENV}={s}: `{rule}` is not one of no-network, no-exec, no-ptrace, \
                     read-only-syscalls, private-network, read-only=PATH, read-write=PATH, best-effort"
                )));
            }
        };
    }
    Ok(sandbox)
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

    #[cfg(feature = "sandbox")]
    #[test]
    fn a_sandbox_from_the_environment_is_its_rules_or_an_error_naming_the_bad_one() {
        let s = parse_sandbox("no-network, no-exec,read-only=/usr,best-effort").unwrap();
        assert_eq!(s, multiproc::Sandbox::new().no_network().no_exec().read_only("/usr").best_effort(true));
        let e = parse_sandbox("no-exec,no-internet").unwrap_err().to_string();
        assert!(e.contains("MULTIPROC_NATS_SANDBOX=no-exec,no-internet: `no-internet` is not one of"), "{e}");
        assert!(parse_sandbox("read-only=").is_err());
    }
}
