//! # multiproc
//!
//! Python's `multiprocessing`, for Rust: real OS processes that run Rust functions.
//!
//! In Rust, processes are chosen for **isolation** — a crashing C library, a leak, a call
//! that hangs, a memory cap. multiproc gives each of those a process of its own and
//! makes sure that nothing is ever left behind: no orphan, no zombie, no hang.
//!
//! **Linux only.** multiproc is built on Linux's pidfds, memfds, futexes, robust mutexes,
//! `SCM_RIGHTS`, cgroups and `/proc/self/exe`; on any other target the crate stops the
//! build with a `compile_error!` saying so.
//!
//! ## Feature flags
//!
//! None is on by default.
//!
//! - `progress`: a progress bar for `map` and `imap` (`MapOptions::progress`, with
//!   `indicatif`).
//! - `tracing`: worker deaths, restarts and other pool events logged through `tracing`.
//! - `sandbox`: `Sandbox`, seccomp filters (with `seccompiler`) and Landlock filesystem
//!   rules (with `landlock`) for pool workers and `Process` children.
//! - `bench-internals`: hidden entry points for the project's own criterion benchmarks;
//!   not an API, no stability promised.
//!
//! ## The first line of `main`
//!
//! A child is this same program, started again. [`init()`] is where it becomes its job,
//! so it must be the **first line of `main`** — the Rust twin of Python's
//! `if __name__ == '__main__':`. Anything before it runs in every child too.
//!
//! ```
//! fn main() {
//!     multiproc::init();
//!     // ...
//! }
//! ```
//!
//! ### With an async runtime
//!
//! Do not put `#[tokio::main]` (or any runtime's attribute) on that `main`: the attribute
//! starts the runtime before the body, so `init()` would run after it, and every child
//! (each pool worker, each process) would start that runtime's threads before becoming
//! its job, and carry them idle for its whole life. Start the runtime by hand after
//! `init()` instead:
//!
//! ```
//! fn double(x: u64) -> u64 { x * 2 }
//!
//! fn main() {
//!     multiproc::init(); // children stop here; the runtime below is the parent's alone
//!     let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
//!     rt.block_on(async_main());
//! }
//!
//! async fn async_main() {
//!     let pool = multiproc::Pool::new(2).unwrap();
//!     assert_eq!(pool.apply_async(double, 21).await.unwrap(), 42); // awaits without blocking
//! }
//! ```
//!
//! Handles are runtime-agnostic futures: an [`AsyncResult`] and [`MapResult`] are
//! `Future`s, [`IMapIter::next_async`] and [`AsCompleted::next_async`] wait for the next
//! outcome (with the `stream` feature, `into_stream()` gives a `futures_core::Stream`), and
//! [`Queue::get_async`], [`Connection::recv_async`] and the manager's
//! [`QueueProxy::get_async`](manager::QueueProxy::get_async) (and their `put`/`send`
//! twins) never block an executor thread.
//!
//! Integration tests, whose `main` the test harness writes, put
//! [`multiproc::test_init!()`](test_init) at the top of the file instead.
//!
//! ## Starting a process
//!
//! A [`Process`] runs a function with one argument. The function is a plain `fn` (or a
//! closure that captures nothing); the argument travels to the child serialized with
//! serde, so it can be any `Serialize + DeserializeOwned` value — several values travel
//! as a tuple.
//!
//! A closure that captures cannot travel (what it captured is not in the child). It is
//! refused by `cargo build`, with an error naming the rule, or, when what it captured is
//! exactly a pointer's size, at the call, with a panic naming the closure. `cargo check`
//! does not see it: stable Rust has no bound for "captures nothing" that a generic
//! function could state, and taking `fn` pointers instead would lose each task's own
//! name in errors.
//!
//! ```
//! use multiproc::{Process, current_process};
//!
//! fn work((name, times): (String, u32)) {
//!     for i in 0..times {
//!         println!("{name} #{i} in {}", current_process().name());
//!     }
//! }
//!
//! fn main() -> Result<(), multiproc::Error> {
//!     multiproc::init();
//!     let mut p = Process::new(work, ("job".to_string(), 2)).name("worker-1");
//!     assert!(p.pid().is_none()); // no pid before start, as in Python
//!     p.start()?;
//!     p.join()?;
//!     assert_eq!(p.exitcode(), Some(0));
//!     Ok(())
//! }
//! ```
//!
//! ## Exit codes
//!
//! [`Process::exitcode`] follows Python: `0` when the function returned, the code passed
//! to `std::process::exit`, `1` when it panicked (the message and location go to the
//! child's stderr), and `-N` when signal `N` ended it (`-9` after
//! [`kill`](Process::kill), `-15` after [`terminate`](Process::terminate)).
//!
//! ## Nothing left behind
//!
//! Every child dies when its parent dies, even by SIGKILL: it gets `PR_SET_PDEATHSIG`
//! and watches its socket for end-of-file. At a normal exit, daemonic children are
//! terminated and the others are waited for, as in Python. Finished children are reaped.
//!
//! ## Same build only
//!
//! Parent and child must run the very same build: functions are named by their offset
//! in the executable. The handshake compares build fingerprints and refuses any other
//! binary with [`Error::WrongBinary`] before it runs anything. A child that dies or stalls
//! before its handshake is an error too ([`Error::DiedDuringStart`],
//! [`Error::StartTimeout`]), never a hang.
//!
//! ## Pools
//!
//! A [`Pool`] keeps worker processes and runs tasks on them, as Python's `Pool` does:
//! [`apply`](Pool::apply), [`apply_async`](Pool::apply_async) (an [`AsyncResult`], also a
//! `Future`), [`map`](Pool::map), [`imap`](Pool::imap), [`imap_unordered`](Pool::imap_unordered),
//! [`starmap`](Pool::starmap). A task that panics, crashes, hangs past its timeout or leaks
//! past a memory limit costs that task only ([`TaskError`]); the pool replaces the worker
//! and goes on.
//!
//! ```
//! fn square(x: u64) -> u64 { x * x }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiproc::init();
//!     let pool = multiproc::Pool::new(2)?;
//!     assert_eq!(pool.map(square, 0..4)?, [0, 1, 4, 9]);
//!     pool.close();
//!     pool.join()?;
//!     Ok(())
//! }
//! ```
//!
//! ## Queues, pipes, shared memory and locks
//!
//! [`Queue`], [`JoinableQueue`], [`SimpleQueue`], [`Pipe`] and its [`Connection`]s,
//! [`Value`], [`Array`], [`SharedMemory`], [`ShareableList`], and the process-shared [`Lock`], [`RLock`],
//! [`Semaphore`], [`Event`], [`Condition`] and [`Barrier`] are handles: each is
//! `Serialize + Deserialize`, so it travels to a child as (part of) the argument of a
//! `Process` or a pool task, its file descriptors riding along. Python refuses a plain
//! `Queue` as a pool task's argument; here it just works. A process that dies holding a
//! [`Lock`] does not deadlock the others: the next locker is told ([`LockError::OwnerDied`]).
//! Processes that did not start one another connect through a
//! [`connection::Listener`] and [`connection::Client`], with a key if you like.
//!
//! ```
//! use multiproc::{Process, Queue};
//!
//! fn produce(q: Queue<u64>) {
//!     for i in 0..3 {
//!         q.put(i * 10).unwrap();
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiproc::init();
//!     let q = Queue::new()?;
//!     let mut p = Process::new(produce, q.clone());
//!     p.start()?;
//!     let got: Vec<u64> = (0..3).map(|_| q.get().unwrap()).collect();
//!     p.join()?;
//!     assert_eq!(got, [0, 10, 20]);
//!     Ok(())
//! }
//! ```
//!
//! ## Managers
//!
//! A [`Manager`] runs a server process holding shared objects — dicts, lists, queues,
//! values, namespaces, locks, and types of your own — used through typed proxies from any
//! process, local or, with an authkey, over TCP. Unlike Python's, an update can run
//! atomically in the server (`modify`), so concurrent `d[k] += 1` loses nothing.
//!
//! ```
//! fn main() -> Result<(), multiproc::ManagerError> {
//!     multiproc::init();
//!     let manager = multiproc::Manager::start()?;
//!     let d = manager.dict::<String, u64>()?;
//!     d.set("apples".to_string(), 3)?;
//!     d.modify("apples", |n: Option<u64>| n.unwrap_or(0) + 1)?;
//!     assert_eq!(d.get("apples")?, Some(4));
//!     Ok(())
//! }
//! ```
//!
//! ## Beyond one machine
//!
//! The companion crate `multiproc-nats` runs the same pool on many machines through NATS
//! JetStream: `multiproc_nats::ClusterPool::from_env()?.connect()?` gives a [`Pool`] — the
//! very type, calls, handles and [`TaskError`]s of a local pool — whose work goes to
//! workers, which are this same binary started with the broker's address, each running
//! its tasks on a local pool. A worker machine that disappears has its tasks redelivered
//! to the others (at-least-once delivery, one outcome per item for the caller); failures
//! only a cluster has are [`TaskError::Remote`].
#![deny(missing_docs)]
// `unsafe` only in `sys` and `spawn::identity`, which allow it by name.
#![deny(unsafe_code)]
// The docs show `fn main` on purpose: where `init()` goes is the point.
#![allow(clippy::needless_doctest_main)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "multiproc supports Linux only: it is built on pidfds, memfds, futexes, SCM_RIGHTS and \
     /proc/self/exe, which this target does not have"
);

mod address;
mod auth;
// The criterion benchmarks' entry points (`bench/benches/`); not an API.
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_api;
mod bytes;
pub mod connection;
mod error;
mod fd;
mod isolation;
pub mod manager;
mod pipe;
mod pool;
mod process;
mod queue;
mod region;
#[doc(hidden)]
pub mod remote;
mod shared;
mod spawn;
mod sync;
#[allow(unsafe_code)]
mod sys;
mod wire;

pub use bytes::Bytes;
pub use error::Error;
pub use fd::Fd;
#[cfg(feature = "sandbox")]
pub use isolation::sandbox::{Sandbox, SandboxSupport};
pub use isolation::{Contain, Containment, Limits};
pub use manager::{Manager, ManagerError};
pub use pipe::{Connection, Joined, Pipe, PipeError, Ready, Recv, Sending, wait};
pub use pool::task;
pub use pool::{
    AsCompleted, AsyncResult, Attempt, Chunksize, ForkServer, IMapIter, Isolated, IsolatedTask, MapOptions, MapResult,
    NextCompleted, NextItem, Pool, PoolBuilder, PoolError, PoolStats, RemoteFailure, ReturnWhen, StarFn, StartMethod,
    TaskError, TaskOptions, as_completed, isolated, wait_results,
};
#[cfg(feature = "stream")]
pub use pool::{CompletedStream, IMapStream};
pub use process::{Process, ProcessInfo, active_children, cpu_count, current_process, parent_process};
pub use queue::{JoinableQueue, Queue, QueueError, QueueGet, QueuePut, SimpleQueue};
pub use shared::{
    Array, ArrayGuard, RawArray, RawValue, ShareableItem, ShareableList, SharedLock, SharedMemory, SharedMemoryManager,
    Value, ValueGuard,
};
#[doc(hidden)]
pub use spawn::start_test_watchdog as __start_test_watchdog;
pub use spawn::{init, set_executable};
pub use sync::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, Event, Lock, LockError, LockGuard, RLock, RLockGuard,
    Semaphore, SyncError,
};
pub use sys::proc::signal_name;
pub use sys::shm::Pod;
pub use wire::{CodecError, DEFAULT_MAX_FRAME, FrameError};
