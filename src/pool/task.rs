//! What a task running in a pool worker knows about its time: its deadline, its soft
//! deadline, and whether the soft one has passed (billiard's soft time limit).
//!
//! A pool built with [`soft_timeout`](crate::PoolBuilder::soft_timeout) tells each task,
//! in its task head, when it will be told to stop; with a
//! [`timeout`](crate::PoolBuilder::timeout), when it will be killed. A long task checks
//! [`cancelled`] between steps (or sleeps until [`soft_deadline`]) and returns what it
//! has, cleanly, before the kill. Outside a pool task every function answers `None` /
//! `false`.
//!
//! ```
//! use std::time::Duration;
//! use multiproc::task;
//!
//! /// Counts for as long as it is allowed to, then says how far it got.
//! fn count_until_told(_: ()) -> u64 {
//!     assert!(task::deadline().is_some()); // the kill would come then
//!     let mut n = 0;
//!     while !task::cancelled() {
//!         n += 1;
//!         std::thread::yield_now();
//!     }
//!     n
//! }
//!
//! multiproc::init();
//! let pool = multiproc::Pool::builder()
//!     .processes(1)
//!     .soft_timeout(Duration::from_millis(50))
//!     .timeout(Duration::from_secs(60))
//!     .build()?;
//! assert!(pool.apply(count_until_told, ())? > 0); // returned, not killed
//! assert!(!task::cancelled()); // not in a task here
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits of the task this worker runs, as instants.
#[derive(Clone, Copy)]
struct Running {
    soft: Option<Instant>,
    hard: Option<Instant>,
}

/// One task at a time runs in a worker; its threads may ask too, so it is process-wide.
static CURRENT: Mutex<Option<Running>> = Mutex::new(None);

fn current() -> Option<Running> {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// While alive, the worker runs a task with these limits (counted from now). Holds
/// whether it set them: a task without limits reads the clock and takes the lock for
/// nothing (every answer is the same as with none set, which is how the task before left
/// them), once per task of a map of tiny ones.
pub(crate) struct TaskTime(bool);

impl TaskTime {
    pub(crate) fn begin(soft: Option<Duration>, hard: Option<Duration>) -> TaskTime {
        if soft.is_none() && hard.is_none() {
            return TaskTime(false);
        }
        let now = Instant::now();
        let running =
            Running { soft: soft.and_then(|d| now.checked_add(d)), hard: hard.and_then(|d| now.checked_add(d)) };
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(running);
        TaskTime(true)
    }
}

impl Drop for TaskTime {
    fn drop(&mut self) {
        if self.0 {
            *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// When the running task's worker will be killed for its timeout (the task fails with
/// [`TaskError::Timeout`](crate::TaskError::Timeout)); `None` without a timeout, or
/// outside a pool task. A chunk of a map is one task: the deadline is the chunk's.
pub fn deadline() -> Option<Instant> {
    current().and_then(|r| r.hard)
}

/// When the running task is asked to stop ([`cancelled`] turns true): the pool's
/// [`soft_timeout`](crate::PoolBuilder::soft_timeout) after the worker took it; `None`
/// without one, or outside a pool task.
pub fn soft_deadline() -> Option<Instant> {
    current().and_then(|r| r.soft)
}

/// Whether the running task has been asked to stop: its soft deadline has passed. The
/// task should return soon (its value still counts); at its [`deadline`] it is killed.
/// Always `false` outside a pool task, or without a soft timeout.
pub fn cancelled() -> bool {
    soft_deadline().is_some_and(|d| Instant::now() >= d)
}

/// The time left before the running task is asked to stop (or, without a soft
/// timeout, killed); `None` with neither, or outside a pool task. Zero once passed.
pub fn remaining() -> Option<Duration> {
    let r = current()?;
    let until = r.soft.or(r.hard)?;
    Some(until.saturating_duration_since(Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_told_its_limits_and_one_without_limits_sees_none() {
        {
            let _t = TaskTime::begin(Some(Duration::from_secs(60)), Some(Duration::from_secs(120)));
            assert!(soft_deadline().is_some() && deadline().is_some() && !cancelled());
        }
        // The next task has no limits: it sets nothing, and finds none left behind.
        let _t = TaskTime::begin(None, None);
        assert_eq!((deadline(), soft_deadline(), remaining(), cancelled()), (None, None, None, false));
    }
}
