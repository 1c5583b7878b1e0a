//! Process-shared synchronization: `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`,
//! `Event`, `Condition`, `Barrier`.
//!
//! Each lives in a small shared-memory region (a sealed memfd) whose descriptor travels
//! with the handle, so any of them can be given to a `Process` as (part of) its argument
//! or sent in a message. Locks are robust pthread mutexes: a process that dies holding
//! one makes the next locker get [`LockError::OwnerDied`] instead of a deadlock. The
//! others wait on shared futexes.

mod barrier;
mod condition;
mod error;
mod event;
mod lock;
mod semaphore;
pub(crate) mod waiter;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use error::{LockError, SyncError};
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub(crate) use lock::{MUTEX_AT, Wait, acquire_with, lock_raw};
pub use semaphore::{BoundedSemaphore, Semaphore};

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys;

/// The longest single futex sleep: waiters wake this often to re-check their condition,
/// so a wake-up lost to a process killed right after receiving it delays, never hangs.
pub(crate) const WAIT_SLICE: Duration = Duration::from_millis(100);

/// The time left until `deadline`, `None` for no deadline, `Err` once it has passed.
pub(crate) fn left(deadline: Option<Instant>) -> Result<Option<Duration>, SyncError> {
    match deadline {
        None => Ok(None),
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(l) if !l.is_zero() => Ok(Some(l)),
            _ => Err(SyncError::TimedOut),
        },
    }
}

/// Sleeps while `word == expected`, one slice at most, and not past `deadline`.
pub(crate) fn sleep_on(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Result<(), SyncError> {
    let slice = match left(deadline)? {
        None => WAIT_SLICE,
        Some(l) => l.min(WAIT_SLICE),
    };
    if word.load(Ordering::SeqCst) == expected {
        sys::futex::wait(word, expected, Some(slice))?;
    }
    Ok(())
}

/// Implements `Serialize`/`Deserialize` for a handle that is an `Arc<Region>` of `kind`.
macro_rules! region_handle_serde {
    ($ty:ident, $kind:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.region.serialize_fd(s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                let region = $crate::region::Region::deserialize_fd(d, $kind, 0)?;
                Ok($ty { region: std::sync::Arc::new(region) })
            }
        }
    };
}
pub(crate) use region_handle_serde;
