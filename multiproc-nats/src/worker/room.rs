//! The worker's cap on the bytes of large task arguments it holds at once.
//!
//! A task whose items are too large for a message travels with them in the pool's object
//! store, and the worker reads them whole into memory before the task runs; they stay
//! there until the task leaves the worker's hands. Each slot holds one task, so without a
//! cap a worker holds up to `slots` such arguments at once (8 slots of 512 MiB: 4 GiB).
//! With one ([`WorkerConfig::max_args_bytes`](crate::WorkerConfig::max_args_bytes)), a
//! task's arguments are read only once they fit beside those already held.
//!
//! The invariants:
//! - **Room is reserved before the read and given back when the task leaves** (acked,
//!   refused, or put back on the queue): what the worker holds of arguments read from
//!   the object store never exceeds the cap, but for the case below.
//! - **A task larger than the cap runs alone**: it reserves the whole cap, so it waits
//!   for every other to be let go, and no other is read while it holds it. A cap never
//!   stops a task from running.
//! - **First come, first read**: the reservations are served in order of arrival, so
//!   small tasks arriving behind a large one do not keep it waiting for ever.
//! - **A waiting task stays this worker's**: its message gets in-progress acks like any
//!   task it holds, so the broker neither hands it out again nor counts a delivery. It
//!   takes a slot meanwhile, so the worker pulls no more than it has slots for.
//!
//! Arguments small enough to travel in the message (under the broker's `max_payload`,
//! 1 MiB by default) are not counted: at most one per slot is held.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The unit of a reservation: a semaphore counts permits in `u32`, and a KiB unit lets
/// a cap reach 4 TiB.
const UNIT: u64 = 1024;

/// The room for large arguments of one worker: unlimited, or a cap shared by its tasks.
#[derive(Clone, Default)]
pub(super) struct ArgsRoom {
    /// The cap's permits, and how many there are.
    cap: Option<(Arc<Semaphore>, u32)>,
}

/// Room reserved for one task's arguments, given back when dropped.
#[derive(Default)]
pub(super) struct Reserved(Option<OwnedSemaphorePermit>);

impl std::fmt::Debug for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reserved({} KiB)", self.0.as_ref().map_or(0, |p| p.num_permits()))
    }
}

impl ArgsRoom {
    /// Room for `cap` bytes of arguments at once (`None`: no cap).
    pub(super) fn new(cap: Option<u64>) -> ArgsRoom {
        ArgsRoom {
            cap: cap.map(|bytes| {
                let units = cap_units(bytes);
                (Arc::new(Semaphore::new(units as usize)), units)
            }),
        }
    }

    /// Reserves room for `bytes` of arguments, waiting for it if it is taken;
    /// `waiting` is called once when the reservation has to wait.
    pub(super) async fn reserve(&self, bytes: u64, waiting: impl FnOnce()) -> Reserved {
        let Some((permits, cap)) = &self.cap else { return Reserved(None) };
        let units = units_of(bytes, *cap);
        if let Ok(permit) = permits.clone().try_acquire_many_owned(units) {
            return Reserved(Some(permit));
        }
        waiting();
        // The semaphore is never closed: an error cannot come, and would mean no cap.
        Reserved(permits.clone().acquire_many_owned(units).await.ok())
    }
}

/// The permits of a cap of `bytes`: at least one, at most what a semaphore and a `u32`
/// hold.
fn cap_units(bytes: u64) -> u32 {
    let most = (Semaphore::MAX_PERMITS as u64).min(u32::MAX as u64);
    bytes.div_ceil(UNIT).clamp(1, most) as u32
}

/// The permits arguments of `bytes` take under a cap of `cap` permits: their size,
/// rounded up, and the whole cap for arguments larger than it (they run alone).
fn units_of(bytes: u64, cap: u32) -> u32 {
    bytes.div_ceil(UNIT).min(cap as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn a_reservation_is_its_size_rounded_up_and_never_more_than_the_cap() {
        let cap = cap_units(3 << 20);
        assert_eq!(cap, 3072);
        assert_eq!(units_of(0, cap), 0);
        assert_eq!(units_of(1, cap), 1);
        assert_eq!(units_of(2 << 20, cap), 2048);
        assert_eq!(units_of((2 << 20) + 1, cap), 2049);
        assert_eq!(units_of(64 << 20, cap), cap, "larger than the cap: the whole cap, so it runs alone");
    }

    #[test]
    fn a_cap_has_one_permit_at_least_and_fits_a_semaphore() {
        assert_eq!(cap_units(0), 1);
        assert_eq!(cap_units(1), 1);
        assert_eq!(cap_units(u64::MAX) as u64, (Semaphore::MAX_PERMITS as u64).min(u32::MAX as u64));
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn arguments_wait_until_those_held_are_let_go_and_a_large_one_runs_alone() {
        block_on(async {
            let room = ArgsRoom::new(Some(3 << 20));
            let mut waited = 0;
            let first = room.reserve(2 << 20, || waited += 1).await;
            assert_eq!(waited, 0);
            let mut second = Box::pin(room.reserve(2 << 20, || waited += 1));
            assert!((&mut second).now_or_never().is_none(), "4 MiB do not fit under 3 MiB");
            drop(first);
            let second = second.await;
            assert_eq!(waited, 1);
            let mut large = Box::pin(room.reserve(64 << 20, || {}));
            assert!((&mut large).now_or_never().is_none(), "larger than the cap: alone");
            drop(second);
            let large = large.await;
            let mut small = Box::pin(room.reserve(1, || {}));
            assert!((&mut small).now_or_never().is_none(), "nothing beside one larger than the cap");
            drop(large);
            small.await;
        });
    }

    #[test]
    fn without_a_cap_nothing_waits() {
        block_on(async {
            let room = ArgsRoom::new(None);
            let first = room.reserve(64 << 30, || panic!("no cap: no wait")).await;
            let second = room.reserve(u64::MAX, || panic!("no cap: no wait")).await;
            assert!(first.0.is_none() && second.0.is_none());
        });
    }
}
