use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::error::SyncError;
use super::lock::{MUTEX_AT, Wait, lock_raw};
use super::{region_handle_serde, sleep_on};
use crate::region::{Kind, Region};
use crate::spawn::identity::{self, SameBuild};
use crate::sys::{self, mutex};

const GEN_AT: usize = 128; // futex word: bumped when a round ends (passed or broken)
const COUNT_AT: usize = 132; // parties waiting in this round
const PARTIES_AT: usize = 136;
const BROKEN_AT: usize = 140; // 1 while broken
const BROKEN_GEN_AT: usize = 144; // the round that ended broken, plus one
const HAS_ACTION_AT: usize = 148; // 1 if an action is set
const BUILD_AT: usize = 152; // the build fingerprint of the process that set the action
const ACTION_AT: usize = 160; // the action's function offset (see `spawn::identity`)
const TIMEOUT_AT: usize = 168; // the default wait timeout in microseconds plus one; 0: none
const SIZE: usize = 176;

/// A barrier for a fixed number of parties across processes, like Python's
/// `multiprocessing.Barrier`: each [`wait`](Barrier::wait) blocks until `parties`
/// processes (or threads) are waiting, then all go on.
///
/// A wait that times out breaks the barrier: every waiter, now and later, gets
/// [`SyncError::BrokenBarrier`] until [`reset`](Barrier::reset). As in Python, a barrier
/// may have an action, run by the last party to arrive before any goes on, and a default
/// timeout (see [`with_options`](Barrier::with_options)).
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
    ///
    /// ```
    /// multiproc::init();
    /// let b = multiproc::Barrier::new(1)?;
    /// assert_eq!(b.wait()?, 0); // one party: passes at once
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(parties: u32) -> Result<Barrier, SyncError> {
        Barrier::with_options(parties, None, None)
    }

    /// A barrier for `parties` waiters, as Python's `Barrier(parties, action, timeout)`.
    ///
    /// `action` is run by the last party to arrive, in its process, before any party goes
    /// on; it is a plain `fn()` (a function item or a non-capturing closure coerces to
    /// one), named across processes as [`Process`](crate::Process) functions are, so it
    /// reaches any process of this program. If it panics, the barrier breaks (the others
    /// get [`SyncError::BrokenBarrier`]) and the panic goes on in the party that ran it.
    /// `timeout` is the default for [`wait`](Barrier::wait).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Barrier, Process, SyncError};
    ///
    /// fn announce() {
    ///     println!("all parties arrived");
    /// }
    ///
    /// fn party(b: Barrier) {
    ///     b.wait().unwrap();
    /// }
    ///
    /// multiproc::init();
    /// let b = Barrier::with_options(2, Some(announce), Some(Duration::from_secs(60)))?;
    /// let mut p = Process::new(party, b.clone());
    /// p.start()?;
    /// b.wait()?; // one of the two processes printed the line before both went on
    /// p.join()?;
    ///
    /// let alone = Barrier::with_options(2, None, Some(Duration::from_millis(10)))?;
    /// assert!(matches!(alone.wait(), Err(SyncError::BrokenBarrier)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_options(parties: u32, action: Option<fn()>, timeout: Option<Duration>) -> Result<Barrier, SyncError> {
        if parties == 0 {
            return Err(SyncError::InvalidArgument("a barrier needs at least one party"));
        }
        let region = Region::create(Kind::Barrier, 0, SIZE)?;
        let map = region.map();
        mutex::init(map, MUTEX_AT, false)?;
        map.atomic_u32(PARTIES_AT).store(parties, Ordering::SeqCst);
        if let Some(action) = action {
            map.atomic_u64(BUILD_AT).store(identity::fingerprint(), Ordering::SeqCst);
            map.atomic_u64(ACTION_AT).store(identity::offset_of(action as usize) as u64, Ordering::SeqCst);
            map.atomic_u32(HAS_ACTION_AT).store(1, Ordering::SeqCst);
        }
        let micros = timeout.map_or(0, |t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX - 1).min(u64::MAX - 1) + 1);
        map.atomic_u64(TIMEOUT_AT).store(micros, Ordering::SeqCst);
        Ok(Barrier { region: Arc::new(region) })
    }

    /// The default timeout of [`wait`](Barrier::wait), if any.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// multiproc::init();
    /// let b = multiproc::Barrier::with_options(3, None, Some(Duration::from_secs(5)))?;
    /// assert_eq!(b.timeout(), Some(Duration::from_secs(5)));
    /// assert_eq!(multiproc::Barrier::new(3)?.timeout(), None);
    /// # Ok::<(), multiproc::SyncError>(())
    /// ```
    pub fn timeout(&self) -> Option<Duration> {
        match self.region.map().atomic_u64(TIMEOUT_AT).load(Ordering::SeqCst) {
            0 => None,
            micros => Some(Duration::from_micros(micros - 1)),
        }
    }

    /// The action, if any, as a function of this process.
    fn action(&self) -> Result<Option<fn()>, SyncError> {
        let map = self.region.map();
        if map.atomic_u32(HAS_ACTION_AT).load(Ordering::SeqCst) == 0 {
            return Ok(None);
        }
        let build = map.atomic_u64(BUILD_AT).load(Ordering::SeqCst);
        let proof = SameBuild::check(build).ok_or(SyncError::InvalidArgument(
            "this barrier's action was set by a different build of the program, so it cannot run here",
        ))?;
        // `with_options` stored the offset of a `fn()` in a process of this very build.
        Ok(Some(proof.function_at::<fn()>(map.atomic_u64(ACTION_AT).load(Ordering::SeqCst) as i64)))
    }

    fn word(&self, at: usize) -> &AtomicU32 {
        self.region.map().atomic_u32(at)
    }

    /// How many parties the barrier waits for.
    ///
    /// ```
    /// multiproc::init();
    /// assert_eq!(multiproc::Barrier::new(3)?.parties(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parties(&self) -> u32 {
        self.word(PARTIES_AT).load(Ordering::SeqCst)
    }

    /// How many are waiting now.
    ///
    /// ```
    /// multiproc::init();
    /// assert_eq!(multiproc::Barrier::new(3)?.n_waiting(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn n_waiting(&self) -> u32 {
        self.word(COUNT_AT).load(Ordering::SeqCst)
    }

    /// Whether the barrier is broken.
    ///
    /// ```
    /// multiproc::init();
    /// let b = multiproc::Barrier::new(2)?;
    /// assert!(!b.broken());
    /// b.abort()?;
    /// assert!(b.broken());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
        let action = self.action()?;
        let held = self.lock()?;
        if self.broken() {
            return Err(SyncError::BrokenBarrier);
        }
        let generation = self.word(GEN_AT);
        let round = generation.load(Ordering::SeqCst);
        let index = self.word(COUNT_AT).fetch_add(1, Ordering::SeqCst);
        if index + 1 >= self.parties() {
            if let Some(action) = action
                && let Err(panic) = std::panic::catch_unwind(action)
            {
                self.break_round();
                drop(held);
                std::panic::resume_unwind(panic);
            }
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
    /// With a default [`timeout`](Barrier::timeout), as [`wait_timeout`](Barrier::wait_timeout).
    ///
    /// ```
    /// multiproc::init();
    /// let b = multiproc::Barrier::new(1)?;
    /// assert_eq!(b.wait()?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&self) -> Result<u32, SyncError> {
        self.wait_until(self.timeout().and_then(|t| Instant::now().checked_add(t)))
    }

    /// As [`wait`](Barrier::wait); after `timeout` it breaks the barrier and returns
    /// [`SyncError::BrokenBarrier`].
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let b = multiproc::Barrier::new(2)?;
    /// // The other party never comes: the barrier breaks.
    /// assert!(b.wait_timeout(Duration::from_millis(10)).is_err());
    /// assert!(b.broken());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, SyncError> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Breaks the barrier: current and future waiters get [`SyncError::BrokenBarrier`].
    ///
    /// ```
    /// multiproc::init();
    /// let b = multiproc::Barrier::new(2)?;
    /// b.abort()?; // waiters (and later callers) fail with BrokenBarrier
    /// assert!(b.wait().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn abort(&self) -> Result<(), SyncError> {
        let _held = self.lock()?;
        self.break_round();
        Ok(())
    }

    /// Returns the barrier to its initial state; current waiters get
    /// [`SyncError::BrokenBarrier`].
    ///
    /// ```
    /// multiproc::init();
    /// let b = multiproc::Barrier::new(1)?;
    /// b.abort()?;
    /// b.reset()?;
    /// assert!(!b.broken());
    /// assert_eq!(b.wait()?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
