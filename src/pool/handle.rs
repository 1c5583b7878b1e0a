//! The `Pool` handle itself: what a pool is made of. Its methods are the front, in
//! `pool/mod.rs`; the engine behind it is chosen when it is built (see `engine`).

use std::sync::Arc;

use super::engine::Shared;

/// A pool of worker processes, like Python's `multiprocessing.Pool`.
///
/// Tasks are plain functions `fn(A) -> R` (fn items or non-capturing closures) whose
/// argument and result serialize with serde. They run in other processes, so a task
/// that panics, segfaults, aborts, exits, hangs or leaks costs that one task: the
/// caller gets a [`TaskError`](super::TaskError) saying what happened, the worker is replaced if it died,
/// and every other task completes.
///
/// ```
/// use multiproc::{Pool, TaskError};
///
/// fn work(n: u64) -> u64 { n * n }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     multiproc::init();
///     let pool = Pool::new(3)?;
///     assert_eq!(pool.apply(work, 3)?, 9);
///     let h = pool.apply_async(work, 4);
///     assert_eq!(h.get()?, 16);
///     assert_eq!(pool.map(work, 0..5)?, [0, 1, 4, 9, 16]);
///     let ordered: Vec<u64> = pool.imap(work, 0..5).collect::<Result<_, TaskError>>()?;
///     assert_eq!(ordered, [0, 1, 4, 9, 16]);
///     pool.close();
///     pool.join()?;
///     Ok(())
/// }
/// ```
///
/// Whatever the chunk size, a worker's death costs only the item it was running: the
/// items it held but had not started run on another worker, and so do results it had
/// computed but not yet sent (results are sent in batches, at most 200 µs apart).
///
/// A `Pool` is `Send + Sync`: share it (`&Pool`, `Arc<Pool>`) and submit from several
/// threads at once. Dropping it without [`close`](Pool::close) + [`join`](Pool::join)
/// terminates the workers and reaps them.
///
/// **Ctrl-C.** A terminal sends SIGINT to its whole foreground process group, workers
/// included. Workers ignore SIGINT (set before their initializer, as Python's pebble and
/// billiard do), so a running task is not killed by it: the program decides. By default
/// it dies of it and its workers go with it; a program that handles Ctrl-C may wait for
/// the running tasks or [`terminate`](Pool::terminate) the pool. A task that wants SIGINT
/// sets it back to its default itself; programs it starts inherit the ignored SIGINT.
pub struct Pool {
    pub(crate) shared: Arc<Shared>,
    pub(crate) processes: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("processes", &self.processes).finish()
    }
}
