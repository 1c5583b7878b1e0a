//! # multiproc-nats
//!
//! multiproc's `Pool` across machines, through NATS JetStream: the same task functions,
//! the same calls, the same `AsyncResult` and `TaskError`, with the broker's work queue in
//! place of a pool's sockets. Workers are the user's own binary, started on any machine
//! with the broker's address; each runs its tasks on a local `multiproc::Pool`.
//!
//! **Linux only**, as `multiproc` is: other targets stop at a `compile_error!`. One
//! feature flag: `sandbox` (multiproc's own), for [`WorkerConfig::sandbox`].
//!
//! This crate owns an async runtime (tokio, for the `async-nats` client) and keeps it
//! inside: every call here blocks or returns at once, and the core `multiproc` crate has
//! no runtime at all.
//!
//! ## One line to switch
//!
//! ```no_run
//! use multiproc::{Pool, TaskError};
//! use multiproc_nats::ClusterPool;
//!
//! fn square(n: u64) -> u64 { n * n }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiproc::init();
//!     multiproc_nats::init(); // with MULTIPROC_NATS_WORKER=1, this process serves instead
//!     // let pool = Pool::new(4)?;
//!     let pool: Pool = ClusterPool::from_env()?.connect()?;
//!     assert_eq!(pool.map(square, 0..10)?, (0..10).map(square).collect::<Vec<_>>());
//!     for r in pool.imap_unordered(square, 0..10) {
//!         let _: u64 = r?;
//!     }
//!     let h = pool.apply_async(square, 7);
//!     match h.get() {
//!         Ok(v) => println!("{v}"),
//!         Err(TaskError::WorkerDied { signal, .. }) => println!("its process died of signal {signal:?}"),
//!         Err(e) => println!("{e}"),
//!     }
//!     pool.close();
//!     pool.join()?;
//!     Ok(())
//! }
//! ```
//!
//! [`ClusterPool::connect`] gives a `multiproc::Pool` — not a look-alike: the very type
//! of a local pool, with a backend that sends its work to the broker. Why one type with
//! two backends rather than a trait implemented by two pools:
//!
//! - *Same types by construction.* Every call (`apply`, `apply_async(_with)`, `map`,
//!   `map_async(_with)`, `map_results`, `imap(_with)`, `imap_unordered(_with)`,
//!   `starmap(_async)`, `close`, `join`, `terminate`, `stats`) and every handle
//!   (`AsyncResult`, `MapResult`, `IMapIter`, their futures) is the local pool's own code,
//!   so a cluster pool cannot drift from it: chunk sizes, `imap`'s bounded window,
//!   callbacks, codec errors and the first-error rule of `map` are shared, not copied.
//! - *No trait to import, no generic code to write.* Functions taking `&Pool` work with
//!   both; a trait over generic methods could not be a trait object anyway.
//! - *The core stays small.* The seam is a hidden trait (`multiproc::remote::Dispatch`)
//!   that takes a batch of encoded items — exactly what a local worker would receive —
//!   and completes each item once; the core knows nothing of NATS or async.
//!
//! A task travels as a local pool's batch does: the function's and the pool
//! trampoline's offsets (the same function identity), and the items' encoded
//! arguments. On the worker, a [`PoolRunner`] hands the batch to its local pool as a
//! map of those items, so a crash, a timeout, `retries`, an initializer,
//! `max_tasks_per_child` and memory limits behave exactly as on one machine, and the
//! caller gets the same `TaskError`s (`WorkerDied` names the signal; `Timeout`;
//! `Panicked` with its location). Failures only a cluster has are
//! `TaskError::Remote` with a [`multiproc::RemoteFailure`]: `WrongBinary`, `Lost`,
//! `Broker`, `TooLarge`, ...
//!
//! ## The pieces
//!
//! - [`ClusterPool`]: connects and gives the `Pool`; [`ClusterPool::client_stats`].
//! - [`serve`] / [`start_worker`]: a worker pulls tasks, runs them on a [`TaskRunner`]
//!   ([`PoolRunner`] by default; [`ProcessRunner`]: one bare child process per slot) and
//!   sends the results to their client. [`init()`] turns a program into a worker when
//!   `MULTIPROC_NATS_WORKER=1`.
//! - [`Client`]: the layer below, raw tasks ([`RawTask`]) and their outcomes with the
//!   worker that ran them ([`TaskOutcome::ran_on`]).
//! - [`BrokerConfig`]: the broker's URL with credentials (user and password, token, nkey,
//!   credentials file) and TLS; nothing here ever prints a secret.
//!
//! ## On the broker
//!
//! A pool named `P` is one JetStream stream `MPROC_P` on subjects `mproc.P.tasks.*`, with
//! work-queue retention (a task leaves the stream once acked) and file storage (tasks
//! survive a broker restart). A task travels on its build's subject,
//! `mproc.P.tasks.<build fingerprint, 16 hex digits>`, and the workers of one build share
//! one durable pull consumer of that subject only, `workers-<fingerprint>`: explicit acks,
//! `ack_wait` (10 s by default; workers send in-progress acks every third of it) before the task of a silent worker goes to another, and at
//! most `max_deliver` (5) deliveries. See [`QueueConfig`]; each setting can also come from
//! the environment (`MULTIPROC_NATS_POOL`, `_REPLICAS`, `_ACK_WAIT`, `_MAX_DELIVER`,
//! `_MAX_ACK_PENDING`, `_CLIENT_LEASE`, `_RESULT_TTL`; a worker's `_PROCESSES`,
//! `_RESULT_PATIENCE` and `_MAX_ARGS_BYTES`, a client's `_SUBMIT_PATIENCE` and
//! `_RESULT_DEADLINE`).
//! Settings apply when the queue is created: a later client or worker that gives another
//! value fails to connect, naming both values (one that leaves a setting out takes the
//! queue's). A
//! stream made by an older version (one subject `mproc.P.tasks`) is refused with a hint:
//! remove it once drained, or use another pool name. A server without JetStream is refused
//! with the fix (`nats-server -js`).
//!
//! ### Replication: no single server to lose
//!
//! With one replica the queue lives on one server: if that server is lost, the pool
//! waits for it. On a JetStream cluster the pool's streams (tasks, results, leases) get,
//! by default, as many replicas as the cluster offers, up to 3; [`QueueConfig::replicas`]
//! (or `MULTIPROC_NATS_REPLICAS`) sets another number, 1 to 5, at most the number of
//! servers in the cluster. Three replicas keep the pool going through the loss of any one
//! server: the cluster elects a new leader for the queue in seconds, and clients
//! and workers (given every server's address, `nats://h1:4222,h2:4222,h3:4222`)
//! reconnect and carry on; every task still gets its one outcome. The setting applies
//! when the queue is created, by whichever client or worker connects first; later ones
//! that leave it out take the queue's.
//!
//! A task message is a postcard head — protocol version, task id, the client's result
//! subject, the build fingerprint, the offsets of the function and of its trampoline,
//! the function's name, the time limit and retries, the item count and the chunk size —
//! followed by the items' arguments, each length-prefixed as in a local pool's frames.
//! A map sends whole chunks per message, at least `ceil(n / (4 × processes))` items
//! (so that tiny tasks are not one message each), within the broker's `max_payload`;
//! each item still runs, fails and times out on its own. Results are stored in the
//! stream `MPROC_P_results` on the client's own subject `mproc.P.results.<client id>`,
//! in as many messages as the size limit needs (work-queue retention: a result leaves once
//! its client acked it; one never taken is gone after [`QueueConfig::result_ttl`], 1 h by
//! default). The client takes them through its durable consumer `client-<client id>`.
//!
//! ### Large arguments and results
//!
//! An argument or a result of any size travels: one too large for a message (the
//! broker's `max_payload`, 1 MiB by default) goes through the pool's JetStream object
//! store `MPROC_P_objects`, in chunks under the limit, checked by its digest, and the
//! message carries only a head naming the object. Its reader deletes it (the client once
//! the task's items all have their outcome, or once it has read a result), a closing
//! client deletes whatever is left of its own, and one whose reader vanished expires
//! after the result TTL. A worker that finds a task's arguments gone (the task settled
//! meanwhile, and this is a redelivery) answers [`RemoteError::Object`], naming it.
//!
//! ## Delivery: at least once, exactly one outcome per item
//!
//! A worker acks a task only once every result of it is stored in the result stream:
//! the broker keeps it for the client, which takes it at once, or when it is back from a
//! disconnection of any length within the result TTL (its consumer outlives the
//! disconnection, and is made again if the broker removed it meanwhile). A worker that
//! vanishes (SIGKILL, a lost machine) stops sending in-progress acks, so after `ack_wait`
//! the broker hands its tasks to other workers: a task may run more than once, and
//! **tasks should be idempotent**. The client drops any result for an item that already
//! has one, so callers see exactly one outcome per item. A task handed out `max_deliver`
//! times, each time to a worker that vanished, fails with [`RemoteError::Lost`]
//! (`TaskError::Remote` with `RemoteFailure::Lost` on a pool; the client hears it from
//! the broker's advisory, kept in the stream `MPROC_P_lost` for the result TTL and read
//! through an ordered consumer, so a client cut off when it came hears it once back, and
//! removes the message).
//!
//! ### A redelivery runs only the unfinished items
//!
//! A task message may carry many items (a map's chunks). While it runs, its worker
//! stores the results of its finished items as it goes, in batches: a batch goes once its
//! oldest result has waited a sixth of `ack_wait` (at most a second), or once it holds
//! 512 KiB; a task shorter than that stores its results at its end, in one go, as
//! before. Once the broker confirms a batch, the worker notes which of the task's items
//! have their results stored, in the stream `MPROC_P_progress` (one small note per task,
//! on `mproc.P.progress.<client id>.<task id>`, the latest only). The task is acked only
//! once every result is stored, and its note is then removed (one its worker could not
//! remove expires with the result TTL). When the worker dies and the
//! task comes back, the worker that takes it reads the note and runs only the items
//! without a stored result (its status counts the others as `items_skipped`); a note that
//! cannot be read runs every item. A note never claims more than is stored (it follows
//! its batch), so a death costs at most the items finished since the last note, which run
//! again and whose duplicates the client drops. The batches follow the task's chunks: the
//! items of a chunk finish together. A map with the default chunksize (or an adaptive
//! one) and no time limit leaves the cut to the worker ([`Task::chunk`] 0): its local pool
//! cuts the message by measured time, about 2 ms of work a chunk and one item a chunk for
//! slower items, so results are stored as the message runs. A chunksize the caller chose,
//! or a time limit (which bounds a chunk), travels as it is.
//!
//! The pool's streams, all with the queue's replicas: `MPROC_P` (tasks),
//! `MPROC_P_results`, `MPROC_P_progress`, `MPROC_P_lost`, `MPROC_P_leases` and
//! `MPROC_P_workers` (heartbeats, in memory).
//!
//! ### A deadline: never a hang
//!
//! By default a caller waits for its result as long as it takes: a task may queue behind
//! others and run for hours. When it must not wait forever for a result that may never
//! come (no worker of this build serving the pool, a client cut off for longer than its
//! lease, whose queued tasks are dropped), give the client a deadline:
//! [`ClientConfig::result_deadline`] / [`ClusterPool::result_deadline`] (or
//! `MULTIPROC_NATS_RESULT_DEADLINE` in seconds). A task without its outcome that long
//! after submission is taken off the queue if it is still there, then fails with
//! [`RemoteError::Deadline`] (`TaskError::Remote` with `RemoteFailure::Lost` on a pool),
//! whose message names the deadline and the likely causes.
//!
//! A worker that [`serve`]s stops on SIGTERM or SIGINT by draining: it takes no new
//! task, finishes the ones it runs, stores their results, acks them, and returns (its
//! heartbeat says `draining` meanwhile); a second signal ends the process at once.
//!
//! A task that crashes the *process* running it (a segfault, an abort, an exit) does not
//! take its worker down: it fails with `WorkerDied` naming the signal, and the worker's
//! pool starts a fresh process. A task's time limit kills its process: `Timeout`.
//!
//! ## A worker of another build
//!
//! Function offsets mean something only in the binary that made them, so every task
//! carries its build fingerprint, and travels on its build's subject: a worker receives
//! only the tasks of its own build, and a stale worker (an old binary left running)
//! never even sees the others. It cannot take tasks it would have to refuse, so it
//! cannot fail them, however fast it is. Idle, it looks at the queue every third of
//! `ack_wait` and, when tasks of other builds wait there, says so in its log (how many,
//! of which builds: "start workers from the binary that submits them"). Tasks whose build
//! has no worker wait on the queue until one comes; a client that must not wait that
//! long sets a [result deadline](ClientConfig::result_deadline). Two builds can so share
//! one pool (a rolling upgrade): each build's tasks go to its own workers.
//!
//! A task that reaches a worker of another build all the same (published by hand on the
//! wrong subject) is still never run: the worker logs the refusal, answers the client with
//! [`RemoteError::WrongBinary`] (naming both builds and the worker), and *terminates* the
//! message (`+TERM`), which removes it from the queue.
//!
//! ## A client that is gone
//!
//! Each client holds a lease: a message on `mproc.P.leases.<client id>` in the stream
//! `MPROC_P_leases`, renewed three times per [`QueueConfig::client_lease`] (60 s by
//! default, or `MULTIPROC_NATS_CLIENT_LEASE`) and gone once it is older than that. A
//! worker looks at the lease of a task's client (at most once a second per client)
//! before it runs the task; a task whose client's lease lapsed and who does not answer
//! either (on `mproc.P.probes.<client id>`; the client was killed, or lost its machine) is dropped unrun and leaves the queue, so it neither runs for
//! nobody nor holds up the work of live clients ([`WorkerStats::orphaned`]). A client
//! cut off from the broker for longer than its lease loses its queued tasks the same way.
//!
//! ## Isolated workers: containment, limits, a sandbox
//!
//! A worker's local pool takes `multiproc`'s isolation, so a cluster can be handed
//! untrusted work as a local pool can: [`WorkerConfig::contain`] (what a task starts dies
//! with its process), [`WorkerConfig::limits`] (CPU time, open files, ...) and, with this
//! crate's `sandbox` feature, [`WorkerConfig::sandbox`] (seccomp presets, Landlock paths,
//! a private network). From the environment: containment from `MULTIPROC_CONTAIN`
//! (`auto`, `cgroup`, `process-tree`, `off`; read by `multiproc` itself), the sandbox
//! from `MULTIPROC_NATS_SANDBOX` ([`SANDBOX_ENV`]: `no-network,no-exec,best-effort`, ...);
//! limits are set in code only (a [`PoolRunner`] of your own pool, or the config). Only
//! the pool's processes are confined, never the worker that talks to the broker. A task
//! that breaks the sandbox fails with `WorkerDied` whose message names the rule
//! ("sandbox: `execve` denied (no exec)"), its process is replaced and the worker goes on;
//! where the kernel lacks what the sandbox needs, the worker fails to start unless the
//! sandbox asks for best effort. Each worker's heartbeat says what is in effect on its
//! machine ([`LiveWorker::isolation`], printed by [`status()`]).
//!
//! ## An operator's view
//!
//! [`status()`] (or [`Client::status`]) reads the queue as the broker sees it, creating
//! nothing: tasks on the queue, results stored and not yet taken by their clients, and,
//! per build, how many wait, how many are in workers' hands, how many were handed out
//! again, and how many pull requests its workers have open; it prints as a few lines. `cargo run -p multiproc-nats --example status` prints
//! it for the pool the environment names. It lists the live workers too, from their
//! heartbeats (every third of `ack_wait`, in the memory stream `MPROC_P_workers`, kept
//! for the client lease): host, pid, build, slots busy and their [`WorkerStats`].
//!
//! ## Security
//!
//! Whoever may publish on `mproc.P.tasks.*` can make the workers call any function of their
//! binary, as whoever may write to a Python pool's queue can unpickle anything. Protect the
//! broker: credentials, TLS, and subject permissions that let only your clients publish
//! tasks and only your workers consume them. `nats-server -js` alone listens on every
//! interface with no authentication: on one machine bind it to the loopback
//! (`nats-server -js -a 127.0.0.1`); across machines give it users and TLS
//! (`nats-server -js --user pool --pass … --tls --tlscert … --tlskey …`, or an
//! `authorization` block with per-user `permissions` in its configuration file), and
//! connect with `tls://pool:…@broker-host:4222`.
#![deny(missing_docs)]
#![allow(clippy::needless_doctest_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "linux"))]
compile_error!("multiproc-nats supports Linux only, as multiproc does");

mod blocking;
mod broker;
mod client;
mod config;
mod envelope;
mod error;
mod objects;
mod pool;
mod runner;
mod status;
#[doc(hidden)]
pub mod testing;
mod worker;

pub use client::{
    Client, ClientConfig, ClientStats, Outcomes, RESULT_DEADLINE_ENV, RawTask, SUBMIT_PATIENCE_ENV, TaskHandle,
    TaskOutcome,
};
pub use config::{
    ACK_WAIT_ENV, Auth, BrokerConfig, CLIENT_LEASE_ENV, ConfigError, DEFAULT_URL, MAX_ACK_PENDING_ENV, MAX_DELIVER_ENV,
    MAX_REPLICAS, POOL_ENV, QueueConfig, REPLICAS_ENV, RESULT_TTL_ENV, Secret, Tls, URL_ENV,
};
pub use envelope::{ItemResults, RanOn, RemoteError};
pub use error::{ClusterError, TaskFailure};
pub use pool::{ClusterPool, GATHER_ENV};
pub use runner::{ItemSink, PoolRunner, ProcessRunner, RunReport, Task, TaskRunner};
pub use status::{BuildStatus, LiveWorker, QueueStatus, status};
pub use worker::{
    MAX_ARGS_BYTES_ENV, PROCESSES_ENV, RESULT_PATIENCE_ENV, SANDBOX_ENV, WORKER_ENV, WorkerConfig, WorkerHandle,
    WorkerStats, init, serve, start_worker,
};

#[doc(hidden)]
pub use multiproc as __multiproc;

/// Makes an integration-test binary able to start multiproc children *and* to become a
/// cluster worker when `MULTIPROC_NATS_WORKER=1` is set: `multiproc::test_init!()` plus
/// [`init()`]. Put it once at the top of the test file, instead of `multiproc::test_init!()`.
///
/// ```ignore
/// // tests/cluster_squares.rs
/// multiproc_nats::test_init!();
///
/// fn square(x: u64) -> u64 { x * x }
///
/// #[test]
/// fn squares_on_the_cluster() {
///     let pool = multiproc_nats::ClusterPool::from_env().unwrap().connect().unwrap();
///     assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
/// }
/// ```
#[macro_export]
macro_rules! test_init {
    () => {
        $crate::__multiproc::__run_before_main!(
            $crate::__multiproc::init,
            $crate::init,
            $crate::__multiproc::__start_test_watchdog
        );
    };
}
