//! The chunk policy, in one place: how many items a task carries, how many tasks a
//! worker holds, and when tasks queued behind a long one are taken back. Pure functions
//! of what the pool measured, tested below.

use super::options::Chunksize;

/// Tasks shorter than this get a deeper window, so workers never wait for the parent.
const WINDOW_TASK_TIME: u64 = 1_000_000;
/// Tiny tasks are sent this many to a worker at most: about a millisecond of work for
/// tasks of a microsecond, so a worker keeps running while the driver wakes up, reads its
/// results and sends more (a wake-up across CPUs costs tens of microseconds on a VM;
/// with 64 the worker of tasks of a few hundred nanoseconds ran dry in every round).
const MAX_WINDOW: usize = 1024;
/// From this window on, tasks go to one worker [`STRIPE`] at a time (below it, one at a
/// time to the least loaded)...
const STRIPE_FROM_WINDOW: usize = 64;
/// ...so that a map's consecutive items run on one worker, and their results come back
/// as runs the map's collector extends in place: two workers taking turns item by item
/// left it a run per item, and a lookup, an allocation and a merge for each.
const STRIPE: usize = 32;
/// A running task holds the tasks queued behind it at least this long before they are
/// taken back for an idle worker...
const RECLAIM_MIN_NS: u64 = 2_000_000;
/// ...and this many times the measured task time: tiny tasks pipelined as usual are
/// never moved (their worker answers them well within it).
const RECLAIM_TASKS: u64 = 20;
/// Adaptive chunks aim at about this much work each.
const CHUNK_TARGET_NS: u64 = 2_000_000;
/// Pending jobs from which a deep window is used as it is (fewer: spread one per worker).
const SPREAD_BELOW_JOBS: usize = 64;
/// Items per task an adaptive `imap` counts with when sizing its window.
const ADAPTIVE_IMAP_CHUNK: usize = 16;
/// The smallest default window of an `imap`.
const MIN_IMAP_WINDOW: usize = 32;

/// How a submission is cut into tasks at dispatch time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunking {
    /// This many items a task, as the caller asked.
    Fixed(u32),
    /// The default cut, `ceil(n / (4 × workers))` items a task as Python's `map` does: a
    /// local pool cuts so; a backend that stores results as they come (the cluster) may
    /// cut finer, by measured time, when no time limit bounds the chunk.
    Even(u32),
    /// Sized from the measured time per item.
    Adaptive,
}

/// A whole map's chunking for `n` items over `workers` workers: Python's
/// `ceil(n / (4 × workers))` by default.
pub(crate) fn map_chunking(chunksize: Option<Chunksize>, n: usize, workers: usize) -> Chunking {
    match chunksize.unwrap_or(Chunksize::Default) {
        Chunksize::Default => Chunking::Even(n.div_ceil(4 * workers).max(1) as u32),
        Chunksize::Fixed(k) => Chunking::Fixed(k.max(1) as u32),
        Chunksize::Adaptive => Chunking::Adaptive,
    }
}

/// An `imap`'s chunking (one item per task by default) and its window of items in the
/// pool: `window` if given, else 4 × workers × chunk, at least 32.
pub(crate) fn imap_chunking(chunksize: Option<Chunksize>, window: Option<usize>, workers: usize) -> (Chunking, usize) {
    let (chunking, chunk) = match chunksize.unwrap_or(Chunksize::Default) {
        Chunksize::Default => (Chunking::Fixed(1), 1),
        Chunksize::Fixed(k) => (Chunking::Fixed(k.max(1) as u32), k.max(1)),
        Chunksize::Adaptive => (Chunking::Adaptive, ADAPTIVE_IMAP_CHUNK),
    };
    (chunking, window.unwrap_or((4 * workers * chunk).max(MIN_IMAP_WINDOW)))
}

/// How many tasks a worker may hold, from the measured nanoseconds per task (0: none
/// measured yet): one for slow tasks, up to [`MAX_WINDOW`] for tiny ones.
pub(crate) fn window(task_ns: u64) -> usize {
    match task_ns {
        0 => 1,
        t if t >= WINDOW_TASK_TIME => 1,
        t => ((WINDOW_TASK_TIME / t) as usize).clamp(2, MAX_WINDOW),
    }
}

/// How many tasks in a row go to the worker that took the last one, while it takes
/// more: a stripe of [`STRIPE`] (counted by the tasks it holds) with a deep window, one
/// otherwise, so that a few items are still spread one per worker.
pub(crate) fn stripe(window: usize) -> usize {
    if window >= STRIPE_FROM_WINDOW { STRIPE } else { 1 }
}

/// A deep window only pays when there is plenty of work: a few items are spread one per
/// worker (counting those still starting), as Python's pool would.
pub(crate) fn spread_window(
    window: usize,
    pending_jobs: usize,
    pending_items: impl FnOnce() -> usize,
    workers: usize,
) -> usize {
    if window > 1 && pending_jobs < SPREAD_BELOW_JOBS {
        window.min(pending_items().div_ceil(workers.max(1)).max(1))
    } else {
        window
    }
}

/// Which worker gets the next task: of those that take more (`loads`: by worker, the
/// tasks each holds, `None` for one that takes no more now), the one that holds the
/// fewest, the first of equals. A map's chunks come one at a time while it is still
/// being encoded: given to the first worker that had room, they all went to one worker
/// while the other waited.
pub(crate) fn least_loaded(loads: impl IntoIterator<Item = Option<usize>>) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (wi, held) in loads.into_iter().enumerate() {
        match (held, best) {
            (Some(h), Some((_, b))) if h >= b => {}
            (Some(h), _) => best = Some((wi, h)),
            (None, _) => {}
        }
    }
    best.map(|(wi, _)| wi)
}

/// In how many nanoseconds the tasks a busy worker holds behind its running task are to
/// be taken back for idle workers (0: now); `None` while there is nothing to take
/// (`queued`: tasks it holds that it may not have started) or nobody to give them to (no
/// idle worker, or pending work the idle ones will take first). `running_ns`: how long
/// its running task has run; `task_ns`: the measured time per task (0: none yet).
pub(crate) fn reclaim_in(
    idle_workers: usize,
    pending_jobs: usize,
    queued: usize,
    running_ns: u64,
    task_ns: u64,
) -> Option<u64> {
    if idle_workers == 0 || pending_jobs > 0 || queued == 0 {
        return None;
    }
    let after = task_ns.saturating_mul(RECLAIM_TASKS).max(RECLAIM_MIN_NS);
    Some(after.saturating_sub(running_ns))
}

/// Items per task for a job of `count` items: its fixed chunk, or (adaptive) about
/// [`CHUNK_TARGET_NS`] of work at `item_ns` per item, no more than a fair share over
/// `workers`; never more than `count`, never 0.
pub(crate) fn chunk_items(chunking: Chunking, count: u32, item_ns: u64, workers: usize) -> u32 {
    let k = match chunking {
        Chunking::Fixed(n) | Chunking::Even(n) => n.max(1),
        Chunking::Adaptive => match item_ns {
            0 => 1,
            ns => {
                let fair = (count as usize).div_ceil(2 * workers).max(1) as u64;
                (CHUNK_TARGET_NS / ns).clamp(1, fair) as u32
            }
        },
    };
    k.min(count).max(1)
}

/// Cuts a chunk of `k` items from `first` so that it carries at most one item with
/// descriptors (each item numbers its descriptors from 0). `with_fds`: the indices of
/// the submission's items that carry some, in order.
pub(crate) fn one_fd_item(k: u32, first: u32, with_fds: impl IntoIterator<Item = u32>) -> u32 {
    let mut inside = with_fds.into_iter().filter(|i| *i >= first && *i < first + k);
    let k = match (inside.next(), inside.next()) {
        (Some(a), Some(b)) if a == first => b - first,
        (Some(a), Some(_)) => a - first,
        _ => k,
    };
    k.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_is_cut_as_python_does() {
        assert_eq!(map_chunking(None, 100, 2), Chunking::Even(13));
        assert_eq!(map_chunking(None, 0, 4), Chunking::Even(1));
        assert_eq!(map_chunking(Some(Chunksize::Fixed(0)), 100, 2), Chunking::Fixed(1));
        assert_eq!(map_chunking(Some(Chunksize::Adaptive), 100, 2), Chunking::Adaptive);
    }

    #[test]
    fn an_imap_window_holds_four_chunks_per_worker() {
        assert_eq!(imap_chunking(None, None, 2), (Chunking::Fixed(1), 32));
        assert_eq!(imap_chunking(Some(Chunksize::Fixed(10)), None, 2), (Chunking::Fixed(10), 80));
        assert_eq!(imap_chunking(Some(Chunksize::Adaptive), Some(5), 2), (Chunking::Adaptive, 5));
    }

    #[test]
    fn the_next_task_goes_to_the_worker_holding_the_fewest() {
        assert_eq!(least_loaded([Some(1), Some(0)]), Some(1));
        assert_eq!(least_loaded([Some(0), Some(0)]), Some(0));
        assert_eq!(least_loaded([Some(2), None, Some(1), Some(1)]), Some(2));
        assert_eq!(least_loaded([None, Some(5)]), Some(1));
        assert_eq!(least_loaded([None, None]), None);
        assert_eq!(least_loaded(std::iter::empty()), None);
    }

    #[test]
    fn a_deep_window_is_filled_a_stripe_at_a_time_and_a_shallow_one_task_by_task() {
        assert_eq!(stripe(1), 1);
        assert_eq!(stripe(STRIPE_FROM_WINDOW - 1), 1, "a few items are spread one per worker");
        assert_eq!(stripe(STRIPE_FROM_WINDOW), STRIPE);
        assert_eq!(stripe(MAX_WINDOW), STRIPE);
        // A window so deep follows only from many items: more than a stripe per worker.
        assert_eq!(spread_window(MAX_WINDOW, 1, || 2 * STRIPE_FROM_WINDOW, 2), STRIPE_FROM_WINDOW);
        assert_eq!(spread_window(MAX_WINDOW, 1, || 60, 2), 30);
    }

    #[test]
    fn the_window_deepens_for_short_tasks_only() {
        assert_eq!(window(0), 1);
        assert_eq!(window(5_000_000), 1);
        assert_eq!(window(400_000), 2);
        assert_eq!(window(100_000), 10);
        assert_eq!(window(1), MAX_WINDOW);
        assert_eq!(window(1_000), 1_000, "a millisecond of tasks of a microsecond");
        assert_eq!(spread_window(10, 3, || 4, 2), 2);
        assert_eq!(spread_window(10, 100, || 4, 2), 10);
        assert_eq!(spread_window(1, 3, || 400, 2), 1);
    }

    #[test]
    fn queued_tasks_are_taken_back_only_from_a_task_running_long_for_an_idle_worker() {
        // An idle worker, nothing pending, three tasks behind one that has run 1 ms, at
        // 10 µs a task: taken back once it has run 2 ms.
        assert_eq!(reclaim_in(1, 0, 3, 1_000_000, 10_000), Some(1_000_000));
        assert_eq!(reclaim_in(1, 0, 3, 2_500_000, 10_000), Some(0));
        // Slower tasks wait for 20 of theirs.
        assert_eq!(reclaim_in(1, 0, 3, 2_500_000, 500_000), Some(7_500_000));
        assert_eq!(reclaim_in(1, 0, 3, 0, u64::MAX), Some(u64::MAX));
        // Nobody to give them to, work for the idle first, or nothing behind.
        assert_eq!(reclaim_in(0, 0, 3, 9_000_000, 10_000), None);
        assert_eq!(reclaim_in(1, 1, 3, 9_000_000, 10_000), None);
        assert_eq!(reclaim_in(1, 0, 0, 9_000_000, 10_000), None);
    }

    #[test]
    fn adaptive_chunks_aim_at_two_milliseconds_within_a_fair_share() {
        assert_eq!(chunk_items(Chunking::Fixed(7), 3, 0, 2), 3);
        assert_eq!(chunk_items(Chunking::Adaptive, 1000, 0, 2), 1);
        assert_eq!(chunk_items(Chunking::Adaptive, 1000, 1_000, 2), 250);
        assert_eq!(chunk_items(Chunking::Adaptive, 100_000, 1_000, 2), 2000);
        assert_eq!(chunk_items(Chunking::Adaptive, 10, 10_000_000, 2), 1);
    }

    #[test]
    fn a_task_carries_at_most_one_item_with_descriptors() {
        assert_eq!(one_fd_item(10, 0, []), 10);
        assert_eq!(one_fd_item(10, 0, [0, 4]), 4);
        assert_eq!(one_fd_item(10, 0, [2, 4]), 2);
        assert_eq!(one_fd_item(10, 5, [5]), 10);
        assert_eq!(one_fd_item(10, 5, [5, 6]), 1);
    }
}
