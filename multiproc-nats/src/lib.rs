//! # multiproc-nats
//!
//! multiproc's tasks across machines, through NATS JetStream: the same task functions, the
//! same function identity, the same build check, with the broker's work queue in place of
//! a pool's sockets. Workers are the user's own binary, started on any machine with the
//! broker's address.
//!
//! This crate owns an async runtime (tokio, for the `async-nats` client) and keeps it
//! inside: every call here blocks or returns at once, and the core `multiproc` crate has
//! no runtime at all.
//!
//! ## The pieces
//!
//! - [`Client`]: submits [`RawTask`]s to a pool's queue and collects their outcomes
//!   ([`TaskHandle`], callbacks, or the lazy, windowed [`Client::imap`]).
//! - [`serve`] / [`start_worker`]: a worker pulls tasks, runs them on a [`TaskRunner`]
//!   ([`ProcessRunner`]: one child process per slot, so a crashing task costs only itself)
//!   and sends each result to its client. [`init()`] turns a program into a worker when
//!   `MULTIPROC_NATS_WORKER=1`.
//! - [`BrokerConfig`]: the broker's URL with credentials (user and password, token, nkey,
//!   credentials file) and TLS; nothing here ever prints a secret.
//!
//! ```no_run
//! use multiproc_nats::{BrokerConfig, Client, ClientConfig, RawTask};
//!
//! fn square(n: u64) -> u64 { n * n }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiproc::init();
//!     multiproc_nats::init(); // with MULTIPROC_NATS_WORKER=1, this process serves instead
//!     let client = Client::connect(ClientConfig::new(BrokerConfig::from_env()?))?;
//!     let tasks = (0..10u64).map(|n| RawTask::new(square, &n).unwrap());
//!     for outcome in client.imap(tasks, 64, true) {
//!         let value: u64 = outcome.decode()?;
//!         println!("{value} (ran on {})", outcome.ran_on.unwrap());
//!     }
//!     Ok(())
//! }
//! ```
//!
//! ## On the broker
//!
//! A pool named `P` is one JetStream stream `MPROC_P` on subject `mproc.P.tasks`, with
//! work-queue retention (a task leaves the stream once acked) and file storage (tasks
//! survive a broker restart), and one durable pull consumer `workers` shared by all of the
//! pool's workers: explicit acks, `ack_wait` (30 s by default) before the task of a silent
//! worker goes to another, and at most `max_deliver` (5) deliveries. See [`QueueConfig`].
//!
//! A task message is a postcard head — protocol version, task id, the client's result
//! subject, the build fingerprint, the offsets of the function and of a trampoline
//! monomorphised for its types, the function's name, its time limit — followed by the
//! argument's bytes. A result goes to `mproc.P.results.<client id>` only, as a request
//! that the client answers once it has recorded it.
//!
//! ## Delivery: at least once, exactly one result per task
//!
//! A worker acks a task only after its client confirmed the result. A worker that
//! vanishes (SIGKILL, a lost machine) stops sending in-progress acks, so after `ack_wait`
//! the broker hands its tasks to other workers: a task may run more than once, and
//! **tasks should be idempotent**. The client drops any result for a task that already
//! has one, so callers see exactly one result per task. A task handed out `max_deliver`
//! times, each time to a worker that vanished, fails with [`RemoteError::Lost`] (the
//! client hears it from the broker's advisory and removes the message).
//!
//! A task that crashes the *process* running it (a segfault, an abort, an exit) does not
//! take its worker down: it fails with [`RemoteError::WorkerDied`] naming the signal,
//! and the slot gets a fresh process. A task's own time limit
//! ([`RawTask::timeout`]) kills its process: [`RemoteError::Timeout`].
//!
//! ## A worker of another build
//!
//! Function offsets mean something only in the binary that made them, so every task
//! carries its build fingerprint. A worker of another build never runs it: it logs the
//! refusal, answers the client with [`RemoteError::WrongBinary`] (naming both builds and
//! the worker), and *terminates* the message (`+TERM`), which removes it from the work
//! queue. So a stale worker cannot poison the queue (no endless redelivery), and the
//! user learns at once, from both sides, that the workers must be redeployed. A cluster
//! therefore runs one build per pool: to run two builds side by side (a rolling upgrade),
//! give each its own pool name.
//!
//! ## Still to come: the cluster `Pool`
//!
//! This crate is the transport; the user-facing `ClusterPool` — the local `Pool`'s calls
//! (`apply`, `apply_async`, `map`, `imap`, `imap_unordered`, `starmap`, `close`, `join`,
//! `terminate`) and types (`AsyncResult`, `TaskError`) — sits on top of it:
//! [`RawTask::new`] for the typed-to-raw step, [`Client::submit_with`] to complete an
//! `AsyncResult` from the outcome, [`Client::imap`] for the lazy window, and a
//! [`TaskRunner`] over a local `Pool` on the worker side in place of [`ProcessRunner`].
//!
//! ## Security
//!
//! Whoever may publish on `mproc.P.tasks` can make the workers call any function of their
//! binary, as whoever may write to a Python pool's queue can unpickle anything. Protect the
//! broker: credentials, TLS, and subject permissions that let only your clients publish
//! tasks and only your workers consume them.
#![deny(missing_docs)]
#![allow(clippy::needless_doctest_main)]

mod broker;
mod client;
mod config;
mod envelope;
mod error;
mod runner;
#[doc(hidden)]
pub mod testing;
mod worker;

pub use client::{Client, ClientConfig, ClientStats, Outcomes, RawTask, TaskHandle, TaskOutcome};
pub use config::{Auth, BrokerConfig, ConfigError, DEFAULT_URL, POOL_ENV, QueueConfig, Secret, Tls, URL_ENV};
pub use envelope::{RanOn, RemoteError};
pub use error::{ClusterError, TaskFailure};
pub use runner::{ProcessRunner, RunReport, Task, TaskRunner};
pub use worker::{SLOTS_ENV, WORKER_ENV, WorkerConfig, WorkerHandle, WorkerStats, init, serve, start_worker};

#[doc(hidden)]
pub use multiproc as __multiproc;

/// Makes an integration-test binary able to start multiproc children *and* to become a
/// cluster worker when `MULTIPROC_NATS_WORKER=1` is set: `multiproc::test_init!()` plus
/// [`init()`]. Put it once at the top of the test file, instead of `multiproc::test_init!()`.
#[macro_export]
macro_rules! test_init {
    () => {
        // SAFETY: an `.init_array` entry is a plain `extern "C" fn()` the loader calls once
        // before `main`; it only calls the two `init` functions, which need nothing `main`
        // sets up.
        #[used]
        #[unsafe(link_section = ".init_array")]
        static __MULTIPROC_NATS_TEST_INIT: extern "C" fn() = {
            extern "C" fn __multiproc_nats_test_init() {
                $crate::__multiproc::init();
                $crate::init();
            }
            __multiproc_nats_test_init
        };
    };
}
