//! Errors of connecting, setting up the queue and submitting (a task's own failure is a
//! [`TaskFailure`]).

use crate::config::ConfigError;
use crate::envelope::RemoteError;

/// Why a client or a worker could not be set up or used. No message contains a secret.
///
/// ```
/// use multiproc_nats::{BrokerConfig, ClusterError};
///
/// let e: ClusterError = BrokerConfig::parse("ftp://broker.example").unwrap_err().into();
/// assert!(matches!(e, ClusterError::Config(_)));
/// assert!(e.to_string().contains("unknown scheme `ftp`"), "{e}");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The broker configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker could not be reached or refused the login.
    #[error("cannot connect to the broker at {broker}: {message}")]
    Connect {
        /// The broker, secrets hidden.
        broker: String,
        /// Why.
        message: String,
    },
    /// The broker refused to set up or show the task queue.
    #[error("the broker refused {what}: {message}")]
    Setup {
        /// What was asked.
        what: String,
        /// Why.
        message: String,
    },
    /// The worker could not start the processes that run its tasks (for instance,
    /// `multiproc::init()` is not the first line of `main`).
    #[error("cannot start the worker's task processes: {0}")]
    Start(multiproc::Error),
    /// The worker's local pool could not start.
    #[error("cannot start the worker's pool: {0}")]
    Pool(#[from] multiproc::PoolError),
    /// The client or worker is closed.
    #[error("the {0} is closed")]
    Closed(&'static str),
    /// A system call failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A task that has no result: which task, and why.
///
/// ```
/// use multiproc_nats::{RemoteError, TaskFailure};
///
/// let failure = TaskFailure {
///     id: 4,
///     function: "square".into(),
///     error: RemoteError::Panicked { message: "boom".into(), location: None, backtrace: None },
/// };
/// assert_eq!(failure.to_string(), "task 4 (`square`) panicked: boom");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {id} (`{function}`) {error}")]
pub struct TaskFailure {
    /// The task's id within its client.
    pub id: u64,
    /// The task's function.
    pub function: String,
    /// Why it has no result.
    pub error: RemoteError,
}
