//! The remote engine's entry points for the `multiproc-nats` crate (through the hidden
//! `multiproc::remote` module): a pool whose work goes to a [`Dispatch`], and
//! [`run_on_pool`], which runs a task that came from another machine on a local pool.

use std::sync::Arc;
use std::time::Duration;

use super::chunk::Chunking;
pub use super::dispatch::{Batch, Dispatch};
use super::engine::{Engine, Shared};
use super::error::{PoolError, TaskError};
use super::handle::Pool;
use super::item::{Delivered, Outcome, for_each_item};
use super::submit::{ItemIndex, Job, MARK_EVERY, Sink, Submission};

/// A pool whose work goes to `dispatch`. `processes` sizes chunks and windows as a local
/// pool's worker count does; `timeout` and `retries` are the defaults of every task.
pub fn pool_with(
    dispatch: Arc<dyn Dispatch>,
    processes: usize,
    timeout: Option<Duration>,
    retries: u32,
) -> Result<Pool, PoolError> {
    if processes == 0 {
        return Err(PoolError::Invalid("processes must be at least 1".into()));
    }
    let shared = Shared { default_timeout: timeout, default_retries: retries, engine: Engine::remote(dispatch) };
    Ok(Pool { shared: Arc::new(shared), processes })
}

/// The backend of a pool made by [`pool_with`].
pub fn dispatch_of(pool: &Pool) -> Option<&dyn Dispatch> {
    match &pool.shared.engine {
        Engine::Remote(remote) => Some(remote.dispatch()),
        Engine::Local(_) => None,
    }
}

/// The name local pool errors carry for tasks that came from elsewhere (their caller
/// names them itself).
const REMOTE_TASK: &str = "(a task from another machine)";

/// A task that came from another machine, to run on a local pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolTask<'a> {
    /// Offset of the function.
    pub function: i64,
    /// Offset of the pool trampoline made for it.
    pub trampoline: i64,
    /// How many items `args` holds.
    pub items: u32,
    /// Items per task (what a timeout and a worker hold); 0: the pool cuts them by their
    /// measured time, as [`Chunksize::Adaptive`](crate::Chunksize::Adaptive) does.
    pub chunk: u32,
    /// The items: each a `u32` little-endian length and its encoded argument.
    pub args: &'a [u8],
    /// Each task's time limit (`None`: the pool's own, if it has one).
    pub timeout: Option<Duration>,
    /// Runs again an item whose worker died, this many times (0: the pool's own setting).
    pub retries: u32,
}

/// Where a [`run_on_pool`] task's outcomes go: `(item, outcome)`, once per item, on the
/// pool's driver thread (quick, never blocking on the pool).
pub type ItemDone = Box<dyn Fn(u32, Result<&[u8], TaskError>) + Send + Sync>;

struct RawSink(ItemDone);

impl Sink for RawSink {
    fn deliver(&self, index: usize, outcome: Outcome<'_>) -> Delivered {
        match outcome {
            Outcome::Value(bytes) => {
                (self.0)(index as u32, Ok(bytes));
                Delivered::Value
            }
            Outcome::Failed(e) => {
                (self.0)(index as u32, Err(e));
                Delivered::Failed
            }
        }
    }

    fn cancelled(&self) -> bool {
        false
    }
}

/// Runs `task` on `pool`, as a map of its items would run: `done` hears each item's
/// outcome. The caller must have checked the task's build fingerprint against
/// [`fingerprint`](crate::remote::fingerprint): the offsets are interpreted as this
/// build's. A malformed item list is an error and runs nothing.
pub fn run_on_pool(pool: &Pool, task: &PoolTask<'_>, done: ItemDone) -> Result<(), String> {
    // The offsets of every `MARK_EVERY`-th item, as a submission keeps them.
    let mut marks = Vec::with_capacity((task.items as usize).div_ceil(MARK_EVERY));
    let mut at = 0usize;
    let n = for_each_item(task.args, task.items, |k, item| {
        if (k as usize).is_multiple_of(MARK_EVERY) {
            marks.push(at);
        }
        at += 4 + item.len();
    });
    if n != task.items || at != task.args.len() {
        return Err(format!("the task's item list is cut or malformed ({n} of {} items readable)", task.items));
    }
    if task.items == 0 {
        return Ok(());
    }
    let offsets = if task.items == 1 { Vec::new() } else { marks };
    let sink = RawSink(done);
    let sub = Submission {
        task: REMOTE_TASK,
        trampoline: task.trampoline,
        function: task.function,
        bytes: task.args.to_vec().into(),
        index: ItemIndex::boxed(offsets, Vec::new()),
        base: 0,
        chunking: match task.chunk {
            0 => Chunking::Adaptive,
            k => Chunking::Fixed(k),
        },
        timeout: task.timeout.or(pool.shared.default_timeout),
        retries: if task.retries > 0 { task.retries } else { pool.shared.default_retries },
        sink,
    };
    let job = Job::new(Arc::new(sub), 0, task.items);
    pool.shared.submit_or_fail(job, false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::pool::item::u32_at;
    use crate::pool::stats::PoolStats;
    use crate::pool::{Chunksize, MapOptions};
    use crate::wire::codec;
    use std::any::Any;

    fn double(x: u64) -> u64 {
        x * 2
    }

    /// A backend that answers in this process: each item's value doubled (whatever the
    /// function), except that batches of one item are held until `release`.
    #[derive(Default)]
    struct Doubler {
        batches: Mutex<Vec<(u32, Option<u32>, &'static str)>>,
        held: Mutex<Vec<Batch>>,
    }

    impl Doubler {
        fn answer(batch: &Batch) {
            let mut body = batch.items();
            for k in 0..batch.len() {
                let len = u32_at(body, 0).unwrap() as usize;
                let x: u64 = codec::decode(&body[4..4 + len]).unwrap();
                let mut out = Vec::new();
                codec::encode_into(&(x * 2), &mut out).unwrap();
                batch.complete(k, Ok(&out));
                body = &body[4 + len..];
            }
        }

        fn release(&self) {
            for b in self.held.lock().unwrap().drain(..) {
                Doubler::answer(&b);
            }
        }
    }

    impl Dispatch for Doubler {
        fn dispatch(&self, mut batch: Batch) {
            self.batches.lock().unwrap().push((batch.len(), batch.chunk(), batch.function_name()));
            if batch.len() == 1 {
                self.held.lock().unwrap().push(batch);
                return;
            }
            // Halves, to check that a split batch completes the right items.
            let rest = batch.split_off(batch.len() / 2);
            assert_eq!(batch.size_of(0, batch.len()), batch.items().len());
            Doubler::answer(&rest);
            Doubler::answer(&batch);
        }
        fn cancel(&self) {}
        fn join(&self) {
            self.release();
        }
        fn terminate(&self) {
            for b in self.held.lock().unwrap().drain(..) {
                for k in 0..b.len() {
                    b.complete(k, Err(TaskError::Terminated { task: b.function_name() }));
                }
            }
        }
        fn stats(&self) -> PoolStats {
            PoolStats { tasks_done: 42, ..PoolStats::default() }
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    fn doubler_pool() -> (Pool, Arc<Doubler>) {
        let backend = Arc::new(Doubler::default());
        (pool_with(backend.clone(), 2, None, 0).unwrap(), backend)
    }

    #[test]
    fn the_map_family_goes_through_the_backend_in_the_pools_batches() {
        let (pool, backend) = doubler_pool();
        assert_eq!(pool.map(double, 0..100).unwrap(), (0..100).map(|x| x * 2).collect::<Vec<_>>());
        let one_by_one = MapOptions::new().chunksize(Chunksize::Fixed(1));
        let v: Vec<u64> = pool.imap_with(double, 0..50, &one_by_one).map(Result::unwrap).collect();
        assert_eq!(v, (0..50).map(|x| x * 2).collect::<Vec<_>>());
        let batches = backend.batches.lock().unwrap().clone();
        // The whole map is one batch with Python's chunk size (100 / (4 × 2)); imap's come
        // as its window allows.
        assert_eq!(batches[0].0, 100);
        assert_eq!(batches[0].1, Some(13));
        assert!(batches[0].2.contains("double"));
        assert!(batches[1..].iter().all(|b| b.1 == Some(1) && b.0 <= 32), "{batches:?}");
        assert_eq!(pool.stats().tasks_done, 42, "the backend's statistics");
        assert!(dispatch_of(&pool).unwrap().as_any().is::<Doubler>());
    }

    #[test]
    fn join_waits_for_the_backend_and_terminate_fails_what_is_left() {
        let (pool, _backend) = doubler_pool();
        let h = pool.apply_async(double, 21);
        assert!(!h.ready());
        pool.close();
        assert!(matches!(pool.apply(double, 1), Err(TaskError::Closed { .. })));
        pool.join().unwrap();
        assert_eq!(h.get().unwrap(), 42);

        let (pool, _backend) = doubler_pool();
        let h = pool.apply_async(double, 1);
        pool.terminate();
        assert!(matches!(h.get(), Err(TaskError::Terminated { .. })));
        assert!(matches!(pool.apply(double, 1), Err(TaskError::Closed { .. })));
    }
}
