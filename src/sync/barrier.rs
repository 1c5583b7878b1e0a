use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::error::SyncError;
use super::lock::{MUTEX_AT, Wait, lock_raw};
use super::{region_handle_serde, sleep_on};
use crate::region::{Kind, Region};
use crate::sys::{self, mutex};

const GEN_AT: usize = 128; // futex word: bumped when a round ends (passed or broken)
const COUNT_AT: usize = 132; // parties waiting in this round
const PARTIES_AT: usize = 136;
const BROKEN_AT: usize = 140; // 1 while broken
const BROKEN_GEN_AT: usize = 144; // the round that ended broken, plus one

/// A barrier for a fixed number of parties across processes, like Python's
/// `multiprocessing.Barrier`: each [`wait`](Barrier::wait) blocks until `parties`
/// processes (or threads) are waiting, then all go on.
///
/// A wait that times out breaks the barrier: every waiter, now and later, gets
/// [`SyncError::BrokenBarrier`] until [`reset`](Barrier::reset).
///
/// ```
/// use multiproc::{Barrier, Process};
///
/// fn party(b: Barrier) {
///     b.wait().unwrap();
/// }
///
/// multiproc::init();
/// let b = Barrier::new(2)?;
/// let mut p = Process::new(party, b.clone());
/// p.start()?;
/// let index = b.wait()?; // 0 or 1: the order of arrival
/// assert!(index < 2);
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    pub(crate) region: Arc<Region>,
}

region_handle_serde!(Barrier, Kind::Barrier);

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier").field("parties", &self.parties()).field("broken", &self.broken()).finish()
    }
}

impl Barrier {
    /// A barrier for `parties` waiters (at least 1).
    pub fn new(parties: u32) -> Result<Barrier, SyncError> {
        if parties == 0 {
            return Err(SyncError::InvalidArgument("a barrier needs at least one party"));
        }
        let region = Region::create(Kind::Barrier, 0, BROKEN_GEN_AT + 4)?;
        mutex::init(region.map(), MUTEX_AT, false)?;
        region.map().atomic_u32(PARTIES_AT).store(parties, Ordering::SeqCst);
        Ok(Barrier { region: Arc::new(region) })
    }

    fn word(&self, at: usize) -> &AtomicU32 {
        self.region.map().atomic_u32(at)
    }

    /// How many parties the barrier waits for.
    pub fn parties(&self) -> u32 {
        self.word(PARTIES_AT).load(Ordering::SeqCst)
    }

    /// How many are waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.word(COUNT_AT).load(Ordering::SeqCst)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.word(BROKEN_AT).load(Ordering::SeqCst) != 0
    }

    fn lock(&self) -> Result<Held<'_>, SyncError> {
        // A dead owner held the lock only for a few stores; the state is still usable.
        lock_raw(self.region.map(), MUTEX_AT, Wait::Forever).map_err(SyncError::from)?;
        Ok(Held(self))
    }

    /// Ends the current round as broken, waking its waiters. Call with the lock held.
    fn break_round(&self) {
        let generation = self.word(GEN_AT);
        let g = generation.load(Ordering::SeqCst);
        self.word(BROKEN_AT).store(1, Ordering::SeqCst);
        self.word(BROKEN_GEN_AT).store(g.wrapping_add(1), Ordering::SeqCst);
        self.word(COUNT_AT).store(0, Ordering::SeqCst);
        generation.store(g.wrapping_add(1), Ordering::SeqCst);
        sys::futex::wake_all(generation);
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<u32, SyncError> {
        let held = self.lock()?;
        if self.broken() {
            return Err(SyncError::BrokenBarrier);
        }
        let generation = self.word(GEN_AT);
        let round = generation.load(Ordering::SeqCst);
        let index = self.word(COUNT_AT).fetch_add(1, Ordering::SeqCst);
        if index + 1 >= self.parties() {
            self.word(COUNT_AT).store(0, Ordering::SeqCst);
            generation.store(round.wrapping_add(1), Ordering::SeqCst);
            sys::futex::wake_all(generation);
            return Ok(index);
        }
        drop(held);
        loop {
            if generation.load(Ordering::SeqCst) != round {
                let _held = self.lock()?;
                if self.word(BROKEN_GEN_AT).load(Ordering::SeqCst) == round.wrapping_add(1) {
                    return Err(SyncError::BrokenBarrier);
                }
                return Ok(index);
            }
            if let Err(SyncError::TimedOut) = sleep_on(generation, round, deadline) {
                let _held = self.lock()?;
                if generation.load(Ordering::SeqCst) == round {
                    self.break_round();
                    return Err(SyncError::BrokenBarrier);
                }
            }
        }
    }

    /// Waits for all parties; returns this waiter's arrival index (0 to `parties - 1`).
    pub fn wait(&self) -> Result<u32, SyncError> {
        self.wait_until(None)
    }

    /// As [`wait`](Barrier::wait); after `timeout` it breaks the barrier and returns
    /// [`SyncError::BrokenBarrier`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, SyncError> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Breaks the barrier: current and future waiters get [`SyncError::BrokenBarrier`].
    pub fn abort(&self) -> Result<(), SyncError> {
        let _held = self.lock()?;
        self.break_round();
        Ok(())
    }

    /// Returns the barrier to its initial state; current waiters get
    /// [`SyncError::BrokenBarrier`].
    pub fn reset(&self) -> Result<(), SyncError> {
        let _held = self.lock()?;
        if self.n_waiting() > 0 {
            self.break_round();
        }
        self.word(BROKEN_AT).store(0, Ordering::SeqCst);
        Ok(())
    }
}

/// The barrier's internal lock, held.
struct Held<'a>(&'a Barrier);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = mutex::unlock(self.0.region.map(), MUTEX_AT);
    }
}
