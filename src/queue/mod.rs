//! `Queue`, `JoinableQueue` and `SimpleQueue`: many-producer, many-consumer FIFO queues
//! between processes.
//!
//! A queue is a ring of messages in shared memory (see `ring`): a `put` encodes the value
//! and copies it into the ring under the producers' robust lock; a `get` copies it out
//! under the consumers' lock. No thread hop, no syscall when no one sleeps; a process
//! killed in the middle loses nothing it had not taken. Descriptors inside values and
//! very large values travel beside the ring as socket messages.

mod feeder;
mod nonblocking;
mod ring;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::region::{Kind, Region, type_tag};
use crate::sync::{WAIT_SLICE, left};
use crate::sys;
use crate::wire::{CodecError, codec, fds};
use ring::{Patience, Ring, RingError};

pub use nonblocking::{QueueGet, QueuePut};

/// Why a queue call failed.
///
/// Migrating from 0.1: a timed `put`/`get` that gives up now fails with [`Full`](QueueError::Full)
/// / [`Empty`](QueueError::Empty), as in Python, where it failed with `TimedOut` (gone);
/// [`JoinableQueue::join_timeout`] returns `Ok(false)` instead; [`Queue::shutdown`] takes
/// Python's `immediate` flag and returns a `Result`.
///
/// ```
/// use multiproc::{Queue, QueueError};
/// use std::time::Duration;
///
/// multiproc::init();
/// let q = Queue::bounded(1)?;
/// q.put(1u32)?;
/// // Timed calls fail as Python's do: `Full` and `Empty`.
/// assert!(matches!(q.put_timeout(2, Duration::from_millis(10)), Err(QueueError::Full)));
/// assert_eq!(q.get()?, 1);
/// assert!(matches!(q.get_timeout(Duration::from_millis(10)), Err(QueueError::Empty)));
/// # Ok::<(), QueueError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A `get` found the queue empty: `get_nowait` at once, `get_timeout` when its
    /// timeout passed (Python's `queue.Empty`; this crate's first releases said `TimedOut`).
    #[error("the queue is empty")]
    Empty,
    /// A `put` found the bounded queue full: `put_nowait` at once, `put_timeout` when its
    /// timeout passed (Python's `queue.Full`).
    #[error("the queue is full")]
    Full,
    /// This handle was [`close`](Queue::close)d.
    #[error("this queue handle is closed")]
    Closed,
    /// The queue was [`shutdown`](Queue::shutdown): no more puts, and gets fail once it is empty.
    #[error("the queue is shut down")]
    ShutDown,
    /// The value could not be serialized; nothing was put.
    #[error("cannot put: {0}")]
    Encode(CodecError),
    /// A message was taken but does not decode as the queue's type; it is gone, the queue
    /// goes on.
    #[error("received a message that does not decode: {0}")]
    Decode(CodecError),
    /// [`task_done`](JoinableQueue::task_done) called more times than items were put.
    #[error("task_done() called more times than there were items")]
    TaskDoneTooOften,
    /// The operating system refused.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<RingError> for QueueError {
    fn from(e: RingError) -> QueueError {
        match e {
            RingError::Full => QueueError::Full,
            RingError::Empty => QueueError::Empty,
            RingError::ShutDown => QueueError::ShutDown,
            RingError::Io(e) => QueueError::Io(e),
        }
    }
}

/// What a handle of this process shares with its clones.
pub(crate) struct Shared {
    ring: Ring,
    /// Puts count unfinished tasks (a `JoinableQueue`).
    joinable: bool,
    /// An unbounded `Queue`'s puts park messages instead of blocking when the ring is full.
    may_park: bool,
    closed: AtomicBool,
    put_buf: Mutex<Vec<u8>>,
    get_buf: Mutex<Vec<u8>>,
    backlog: feeder::Backlog,
}

impl feeder::Fed for Shared {
    fn backlog(&self) -> &feeder::Backlog {
        &self.backlog
    }
    fn ring(&self) -> &Ring {
        &self.ring
    }
    fn joinable(&self) -> bool {
        self.joinable
    }
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A handle's encoding buffer; `None` if another thread holds it and `patience` is `Try`.
fn buffer(m: &Mutex<Vec<u8>>, patience: Patience) -> Option<MutexGuard<'_, Vec<u8>>> {
    match (patience, m.try_lock()) {
        (_, Ok(g)) => Some(g),
        (_, Err(std::sync::TryLockError::Poisoned(p))) => Some(p.into_inner()),
        (Patience::Try, Err(std::sync::TryLockError::WouldBlock)) => None,
        _ => Some(lock(m)),
    }
}

/// Where a queue records whether it is joinable.
const JOINABLE_AT: usize = ring::UNFINISHED_AT + 8;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Queue,
    Joinable,
    Simple,
}

/// The untyped handle behind every queue type.
#[derive(Clone)]
struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    fn create<T>(flavor: Flavor, maxsize: usize, buffer: usize) -> Result<Handle, QueueError> {
        let maxsize = u32::try_from(maxsize).unwrap_or(u32::MAX);
        let ring = Ring::create(type_tag::<T>(), maxsize, buffer)?;
        if flavor == Flavor::Joinable {
            ring.region.map().atomic_u32(JOINABLE_AT).store(1, Ordering::SeqCst);
        }
        Ok(Handle::wrap(ring, flavor))
    }

    fn wrap(ring: Ring, flavor: Flavor) -> Handle {
        let joinable = ring.region.map().atomic_u32(JOINABLE_AT).load(Ordering::SeqCst) != 0;
        let may_park = flavor != Flavor::Simple && ring.maxsize() == 0;
        Handle {
            shared: Arc::new(Shared {
                ring,
                joinable,
                may_park,
                closed: AtomicBool::new(false),
                put_buf: Mutex::new(Vec::new()),
                get_buf: Mutex::new(Vec::new()),
                backlog: feeder::Backlog::default(),
            }),
        }
    }

    fn check_open(&self) -> Result<(), QueueError> {
        if self.shared.closed.load(Ordering::Relaxed) { Err(QueueError::Closed) } else { Ok(()) }
    }

    fn put<T: Serialize>(&self, value: &T, patience: Patience) -> Result<(), QueueError> {
        self.check_open()?;
        let s = &self.shared;
        // An async put's attempt (`Try`) does not wait behind a blocking put of this
        // process (only a bounded queue's put sleeps holding the buffer).
        let Some(mut buf) = buffer(&s.put_buf, if s.may_park { Patience::No } else { patience }) else {
            return Err(QueueError::Full);
        };
        let patience = if let Patience::Try = patience { Patience::No } else { patience };
        buf.clear();
        let (r, fds) = fds::collect_outgoing(|| codec::encode_into(value, &mut buf));
        r.map_err(QueueError::Encode)?;
        if s.joinable {
            s.ring.unfinished().fetch_add(1, Ordering::SeqCst);
        }
        let r = if s.may_park {
            feeder::put_or_park(s, &buf, fds)
        } else {
            let mut fds = fds;
            s.ring.put(&buf, &mut fds, patience)
        };
        if r.is_err() && s.joinable {
            s.ring.unfinished().fetch_sub(1, Ordering::SeqCst);
        }
        Ok(r?)
    }

    fn get<T: DeserializeOwned>(&self, patience: Patience) -> Result<T, QueueError> {
        self.check_open()?;
        let Some(mut buf) = buffer(&self.shared.get_buf, patience) else { return Err(QueueError::Empty) };
        let mut got = Vec::new();
        // Decoded before the message leaves the queue: the less a consumer does after
        // that, the less a kill can cost (see `Ring::get_with`).
        let decoded = self.shared.ring.get_with(&mut buf, &mut got, patience, |bytes, fds| {
            fds::with_incoming(std::mem::take(fds), || codec::decode::<T>(bytes))
        })?;
        decoded.map_err(QueueError::Decode)
    }

    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ring = &self.shared.ring;
        let region = fds::attach(ring.region.fd()).map_err(serde::ser::Error::custom)?;
        let tx = fds::attach(ring.tx.as_fd()).map_err(serde::ser::Error::custom)?;
        let rx = fds::attach(ring.rx.as_fd()).map_err(serde::ser::Error::custom)?;
        (region, tx, rx).serialize(s)
    }

    fn deserialize<'de, T, D: Deserializer<'de>>(d: D, flavor: Flavor) -> Result<Handle, D::Error> {
        let (region, tx, rx) = <(u32, u32, u32)>::deserialize(d)?;
        let take = |i| fds::take(i).map_err(D::Error::custom);
        let region = Region::open(take(region)?, Kind::Queue, type_tag::<T>()).map_err(D::Error::custom)?;
        let ring = Ring::open(region, take(tx)?, take(rx)?).map_err(D::Error::custom)?;
        Ok(Handle::wrap(ring, flavor))
    }
}

fn until(timeout: Duration) -> Patience {
    Patience::Until(Some(Instant::now() + timeout))
}

/// A FIFO queue between any number of producer and consumer processes, like Python's
/// `multiprocessing.Queue`.
///
/// Give it to child processes as (part of) a [`Process`](crate::Process) argument, or
/// send it in a message; every copy is the same queue. Values are any serde type,
/// including ones holding descriptors ([`Fd`](crate::Fd)) or other handles.
///
/// * Unbounded ([`new`](Queue::new)): `put` never blocks; when the shared buffer is
///   full, messages wait in this process and a feeder thread delivers them in order
///   (at exit the process waits for them, as in Python — see
///   [`cancel_join_thread`](Queue::cancel_join_thread)).
/// * Bounded ([`bounded`](Queue::bounded)): `put` waits while `maxsize` messages are queued.
///
/// A consumer killed in the middle of a `get` takes only the message it received, if
/// any; every other message stays for the others. Messages from one producer arrive in
/// the order it put them.
///
/// ```
/// use multiproc::{Process, Queue};
///
/// fn producer(q: Queue<String>) {
///     q.put("a".to_string()).unwrap();
/// }
///
/// multiproc::init();
/// let q = Queue::bounded(10)?;
/// let mut p = Process::new(producer, q.clone());
/// p.start()?;
/// assert_eq!(q.get()?, "a");
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T> {
    handle: Handle,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { handle: self.handle.clone(), _t: PhantomData }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").field("qsize", &self.qsize()).field("maxsize", &self.maxsize()).finish()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.handle.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Queue { handle: Handle::deserialize::<T, D>(d, Flavor::Queue)?, _t: PhantomData })
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::new()?;
    /// q.put("hello".to_string())?;
    /// assert_eq!(q.get()?, "hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Result<Queue<T>, QueueError> {
        Queue::with_buffer(0, ring::DEFAULT_CAPACITY)
    }

    /// A queue holding at most `maxsize` messages (0: unbounded).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::bounded(2)?;
    /// assert_eq!(q.maxsize(), 2);
    /// q.put(1u8)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bounded(maxsize: usize) -> Result<Queue<T>, QueueError> {
        Queue::with_buffer(maxsize, ring::DEFAULT_CAPACITY)
    }

    /// A queue of at most `maxsize` messages (0: unbounded) whose shared buffer holds
    /// `buffer_bytes` (default 1 MiB; larger messages travel beside it).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::with_buffer(0, 1 << 20)?; // unbounded, a 1 MiB ring
    /// q.put(vec![0u8; 1000])?;
    /// assert_eq!(q.get()?.len(), 1000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_buffer(maxsize: usize, buffer_bytes: usize) -> Result<Queue<T>, QueueError> {
        Ok(Queue { handle: Handle::create::<T>(Flavor::Queue, maxsize, buffer_bytes)?, _t: PhantomData })
    }

    /// Puts `item` at the back, waiting while a bounded queue is full.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::new()?;
    /// q.put(1u32)?;
    /// assert_eq!(q.get()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&self, item: T) -> Result<(), QueueError> {
        self.handle.put(&item, Patience::Until(None))
    }

    /// As [`put`](Queue::put), failing with [`QueueError::Full`] if the queue is still
    /// full after `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Queue, QueueError};
    ///
    /// multiproc::init();
    /// let q = Queue::bounded(1)?;
    /// q.put_timeout(1, Duration::from_secs(1))?;
    /// assert!(matches!(q.put_timeout(2, Duration::from_millis(10)), Err(QueueError::Full)));
    /// # Ok::<(), QueueError>(())
    /// ```
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), QueueError> {
        self.handle.put(&item, until(timeout))
    }

    /// Puts `item` only if there is room now ([`QueueError::Full`] otherwise).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::bounded(1)?;
    /// q.put_nowait(1u32)?;
    /// assert!(matches!(q.put_nowait(2), Err(multiproc::QueueError::Full)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_nowait(&self, item: T) -> Result<(), QueueError> {
        self.handle.put(&item, Patience::No)
    }

    /// Takes the front item, waiting while the queue is empty.
    ///
    /// ```
    /// multiproc::init();
    /// fn produce(q: multiproc::Queue<u32>) { q.put(7).unwrap() }
    ///
    /// let q = multiproc::Queue::new()?;
    /// let mut p = multiproc::Process::new(produce, q.clone());
    /// p.start()?;
    /// assert_eq!(q.get()?, 7); // waits for the child
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self) -> Result<T, QueueError> {
        self.handle.get(Patience::Until(None))
    }

    /// As [`get`](Queue::get), failing with [`QueueError::Empty`] if the queue is still
    /// empty after `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Queue, QueueError};
    ///
    /// multiproc::init();
    /// let q = Queue::<u8>::new()?;
    /// assert!(matches!(q.get_timeout(Duration::from_millis(10)), Err(QueueError::Empty)));
    /// # Ok::<(), QueueError>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.handle.get(until(timeout))
    }

    /// Takes the front item if there is one now ([`QueueError::Empty`] otherwise).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::<u32>::new()?;
    /// assert!(matches!(q.get_nowait(), Err(multiproc::QueueError::Empty)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_nowait(&self) -> Result<T, QueueError> {
        self.handle.get(Patience::No)
    }
}

impl<T> Queue<T> {
    /// Messages in the queue now (already other processes may have changed it). Messages
    /// still parked in a producer (see [`Queue`]) are not counted.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::new()?;
    /// q.put(1u8)?;
    /// q.put(2)?;
    /// assert_eq!(q.qsize(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn qsize(&self) -> usize {
        self.handle.shared.ring.len() as usize
    }

    /// Whether the queue is empty now.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::<u8>::new()?;
    /// assert!(q.empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether a bounded queue is full now (never for an unbounded one).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::bounded(1)?;
    /// q.put(1u8)?;
    /// assert!(q.full());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn full(&self) -> bool {
        let max = self.maxsize();
        max > 0 && self.qsize() >= max
    }

    /// The bound given at creation (0: unbounded).
    ///
    /// ```
    /// multiproc::init();
    /// assert_eq!(multiproc::Queue::<u8>::bounded(4)?.maxsize(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn maxsize(&self) -> usize {
        self.handle.shared.ring.maxsize() as usize
    }

    /// Closes this handle (and its clones in this process): further `put`s and `get`s on
    /// it fail with [`QueueError::Closed`]. Messages it already put are still delivered;
    /// other processes' handles are unaffected. (Python's `close`.)
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::new()?;
    /// q.put(1u8)?;
    /// q.close(); // this handle puts no more
    /// assert!(q.put(2).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        self.handle.shared.closed.store(true, Ordering::Relaxed);
    }

    /// Waits until every message this process parked (see [`Queue`]) is in the queue.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::new()?;
    /// q.put(1u8)?;
    /// q.close();
    /// q.join_thread(); // waits until what this handle put is in the queue
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_thread(&self) {
        self.handle.shared.backlog.wait_drained();
    }

    /// Lets this process exit without waiting for its parked messages (they are lost).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::new()?;
    /// q.put(1u8)?;
    /// q.cancel_join_thread(); // exiting will not wait for the queue to take it
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel_join_thread(&self) {
        self.handle.shared.backlog.lock().cancelled = true;
    }

    /// Shuts the queue down for every process, as Python 3.13's `Queue.shutdown`: `put`s
    /// fail with [`QueueError::ShutDown`] and blocked callers wake up. `get`s return what
    /// is left, then fail with it; with `immediate`, what is queued is dropped (and, for a
    /// [`JoinableQueue`], counted as done), so `get`s fail at once. Messages other
    /// processes had parked (see [`Queue`]) are dropped too.
    ///
    /// ```
    /// use multiproc::{Queue, QueueError};
    ///
    /// multiproc::init();
    /// let q = Queue::new()?;
    /// q.put(1)?;
    /// q.put(2)?;
    /// q.shutdown(false)?;
    /// assert!(matches!(q.put(3), Err(QueueError::ShutDown)));
    /// assert_eq!(q.get()?, 1);
    /// q.shutdown(true)?; // drops 2
    /// assert!(matches!(q.get(), Err(QueueError::ShutDown)));
    /// # Ok::<(), QueueError>(())
    /// ```
    pub fn shutdown(&self, immediate: bool) -> Result<(), QueueError> {
        let shared = &self.handle.shared;
        let dropped = shared.ring.shut_down(immediate)?;
        if shared.joinable && dropped > 0 {
            done_tasks(shared.ring.unfinished(), dropped);
        }
        Ok(())
    }

    /// Whether the queue was shut down.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::<u8>::new()?;
    /// q.shutdown(false)?;
    /// assert!(q.is_shut_down());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_shut_down(&self) -> bool {
        self.handle.shared.ring.is_shut_down()
    }
}

/// Takes up to `n` from the unfinished-task counter `c` (never below zero), waking
/// `join`ers when it reaches zero; returns how many it took.
fn done_tasks(c: &std::sync::atomic::AtomicU32, n: u32) -> u32 {
    let mut cur = c.load(Ordering::SeqCst);
    loop {
        let take = cur.min(n);
        if take == 0 {
            return 0;
        }
        match c.compare_exchange_weak(cur, cur - take, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) if take == cur => {
                sys::futex::wake_all(c);
                return take;
            }
            Ok(_) => return take,
            Err(now) => cur = now,
        }
    }
}

/// A [`Queue`] that also counts unfinished tasks, like Python's
/// `multiprocessing.JoinableQueue`: every `put` adds one, every
/// [`task_done`](JoinableQueue::task_done) removes one, and [`join`](JoinableQueue::join)
/// waits for zero. It derefs to its [`Queue`] for `put`, `get` and the rest.
///
/// ```
/// use multiproc::{JoinableQueue, Process};
///
/// fn worker(q: JoinableQueue<u32>) {
///     loop {
///         let n = q.get().unwrap();
///         println!("done {n}");
///         q.task_done().unwrap();
///     }
/// }
///
/// multiproc::init();
/// let q = JoinableQueue::new()?;
/// let mut p = Process::new(worker, q.clone()).daemon(true);
/// p.start()?;
/// for n in 0..3 {
///     q.put(n)?;
/// }
/// q.join()?; // all three processed
/// p.kill()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue { queue: self.queue.clone() }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue").field("qsize", &self.qsize()).field("unfinished", &self.unfinished()).finish()
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let handle = Handle::deserialize::<T, D>(d, Flavor::Joinable)?;
        if !handle.shared.joinable {
            return Err(D::Error::custom("expected a JoinableQueue, got a plain Queue"));
        }
        Ok(JoinableQueue { queue: Queue { handle, _t: PhantomData } })
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded joinable queue.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put(1u8)?;
    /// assert_eq!(q.unfinished(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Result<JoinableQueue<T>, QueueError> {
        JoinableQueue::bounded(0)
    }

    /// A joinable queue of at most `maxsize` messages (0: unbounded).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::<u8>::bounded(1)?;
    /// q.put(1)?;
    /// assert!(q.full());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bounded(maxsize: usize) -> Result<JoinableQueue<T>, QueueError> {
        let handle = Handle::create::<T>(Flavor::Joinable, maxsize, ring::DEFAULT_CAPACITY)?;
        Ok(JoinableQueue { queue: Queue { handle, _t: PhantomData } })
    }
}

impl<T> JoinableQueue<T> {
    fn counter(&self) -> &std::sync::atomic::AtomicU32 {
        self.queue.handle.shared.ring.unfinished()
    }

    /// Tasks put and not yet marked done.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put(1u32)?;
    /// q.put(2)?;
    /// assert_eq!(q.unfinished(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unfinished(&self) -> usize {
        self.counter().load(Ordering::SeqCst) as usize
    }

    /// Marks one task taken from the queue as done.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put("job".to_string())?;
    /// let _job = q.get()?;
    /// q.task_done()?;
    /// assert_eq!(q.unfinished(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn task_done(&self) -> Result<(), QueueError> {
        if done_tasks(self.counter(), 1) == 0 { Err(QueueError::TaskDoneTooOften) } else { Ok(()) }
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<bool, QueueError> {
        let c = self.counter();
        loop {
            let cur = c.load(Ordering::SeqCst);
            if cur == 0 {
                return Ok(true);
            }
            let Ok(left) = left(deadline) else { return Ok(false) };
            sys::futex::wait(c, cur, Some(left.map_or(WAIT_SLICE, |l| l.min(WAIT_SLICE))))?;
        }
    }

    /// Waits until every task put has been marked done.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put(1u32)?;
    /// q.get()?;
    /// q.task_done()?;
    /// q.join()?; // every item put was marked done
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(&self) -> Result<(), QueueError> {
        self.join_until(None).map(drop)
    }

    /// As [`join`](JoinableQueue::join), for `timeout` at most: whether every task was done
    /// (as the manager's [`JoinableQueueProxy::join_timeout`](crate::manager::JoinableQueueProxy::join_timeout);
    /// Python's `join` has no timeout).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put("task".to_string())?;
    /// assert!(!q.join_timeout(Duration::from_millis(10))?);
    /// q.get()?;
    /// q.task_done()?;
    /// assert!(q.join_timeout(Duration::ZERO)?);
    /// # Ok::<(), multiproc::QueueError>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, QueueError> {
        self.join_until(Some(Instant::now() + timeout))
    }
}

/// A minimal queue, like Python's `multiprocessing.SimpleQueue`: unbounded in count,
/// `put` waits only while its shared buffer is full (no feeder thread), `get` waits for
/// an item.
///
/// ```
/// multiproc::init();
/// let q = multiproc::SimpleQueue::new()?;
/// q.put(vec![1, 2, 3])?;
/// assert!(!q.empty());
/// assert_eq!(q.get()?, [1, 2, 3]);
/// # Ok::<(), multiproc::QueueError>(())
/// ```
pub struct SimpleQueue<T> {
    handle: Handle,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue { handle: self.handle.clone(), _t: PhantomData }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SimpleQueue")
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.handle.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SimpleQueue { handle: Handle::deserialize::<T, D>(d, Flavor::Simple)?, _t: PhantomData })
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new, empty queue.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::SimpleQueue::new()?;
    /// q.put(5u8)?;
    /// assert_eq!(q.get()?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Result<SimpleQueue<T>, QueueError> {
        Ok(SimpleQueue { handle: Handle::create::<T>(Flavor::Simple, 0, ring::DEFAULT_CAPACITY)?, _t: PhantomData })
    }

    /// Puts `item` at the back.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::SimpleQueue::new()?;
    /// q.put("x".to_string())?;
    /// assert!(!q.empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&self, item: T) -> Result<(), QueueError> {
        self.handle.put(&item, Patience::Until(None))
    }

    /// Takes the front item, waiting while the queue is empty.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::SimpleQueue::new()?;
    /// q.put(5u8)?;
    /// assert_eq!(q.get()?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self) -> Result<T, QueueError> {
        self.handle.get(Patience::Until(None))
    }

    /// As [`get`](SimpleQueue::get), failing with [`QueueError::Empty`] if the queue is
    /// still empty after `timeout`.
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let q = multiproc::SimpleQueue::<u8>::new()?;
    /// assert!(q.get_timeout(Duration::from_millis(10)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.handle.get(until(timeout))
    }
}

impl<T> SimpleQueue<T> {
    /// Whether the queue is empty now.
    ///
    /// ```
    /// multiproc::init();
    /// assert!(multiproc::SimpleQueue::<u8>::new()?.empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn empty(&self) -> bool {
        self.handle.shared.ring.len() == 0
    }

    /// Closes this handle (and its clones in this process).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::SimpleQueue::<u8>::new()?;
    /// q.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        self.handle.shared.closed.store(true, Ordering::Relaxed);
    }
}
