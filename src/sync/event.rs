use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::error::SyncError;
use super::{region_handle_serde, sleep_on};
use crate::region::{HEADER, Kind, Region};
use crate::sys;

const FLAG_AT: usize = HEADER;

/// A flag shared between processes, like Python's `multiprocessing.Event`: processes
/// [`wait`](Event::wait) until one of them [`set`](Event::set)s it.
///
/// ```
/// use multiproc::{Event, Process};
///
/// fn starter(go: Event) {
///     go.set();
/// }
///
/// multiproc::init();
/// let go = Event::new()?;
/// let mut p = Process::new(starter, go.clone());
/// p.start()?;
/// go.wait()?;
/// assert!(go.is_set());
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Event {
    pub(crate) region: Arc<Region>,
}

region_handle_serde!(Event, Kind::Event);

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}

impl Event {
    /// A new event, not set.
    ///
    /// ```
    /// multiproc::init();
    /// let e = multiproc::Event::new()?;
    /// assert!(!e.is_set());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Result<Event, SyncError> {
        let region = Region::create(Kind::Event, 0, FLAG_AT + 4)?;
        Ok(Event { region: Arc::new(region) })
    }

    fn flag(&self) -> &AtomicU32 {
        self.region.map().atomic_u32(FLAG_AT)
    }

    /// Whether the event is set.
    ///
    /// ```
    /// multiproc::init();
    /// let e = multiproc::Event::new()?;
    /// e.set();
    /// assert!(e.is_set());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_set(&self) -> bool {
        self.flag().load(Ordering::SeqCst) != 0
    }

    /// Sets the event, waking every waiter.
    ///
    /// ```
    /// multiproc::init();
    /// let e = multiproc::Event::new()?;
    /// e.set();
    /// e.wait()?; // returns at once
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self) {
        self.flag().store(1, Ordering::SeqCst);
        sys::futex::wake_all(self.flag());
    }

    /// Clears the event.
    ///
    /// ```
    /// multiproc::init();
    /// let e = multiproc::Event::new()?;
    /// e.set();
    /// e.clear();
    /// assert!(!e.is_set());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) {
        self.flag().store(0, Ordering::SeqCst);
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool, SyncError> {
        while !self.is_set() {
            match sleep_on(self.flag(), 0, deadline) {
                Ok(()) => {}
                Err(SyncError::TimedOut) => return Ok(self.is_set()),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Waits until the event is set.
    ///
    /// ```
    /// multiproc::init();
    /// fn signal(e: multiproc::Event) { e.set() }
    ///
    /// let e = multiproc::Event::new()?;
    /// let mut p = multiproc::Process::new(signal, e.clone());
    /// p.start()?;
    /// e.wait()?; // set by the child
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&self) -> Result<(), SyncError> {
        self.wait_until(None).map(|_| ())
    }

    /// Waits at most `timeout`; returns whether the event is set (Python's `wait(timeout)`).
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let e = multiproc::Event::new()?;
    /// assert!(!e.wait_timeout(Duration::from_millis(10))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, SyncError> {
        self.wait_until(Some(Instant::now() + timeout))
    }
}
