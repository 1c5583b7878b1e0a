//! The shared part of a queue: a ring of messages in shared memory, plus a message
//! socket for the messages a ring cannot carry.
//!
//! Layout: a control block (two robust mutexes, head and tail words, wake-up counters),
//! then the ring. A record is an 8-byte header (length, tag) and its payload, padded to
//! 8 bytes. Producers serialize on the *put* mutex and only ever advance `tail`;
//! consumers serialize on the *get* mutex and only advance `head`. Each of those words
//! packs the byte position and a message sequence number, and is stored once, after the
//! record is fully written (or copied out): a process killed at any point leaves either
//! the whole message in the queue or none of it. The robust mutexes hand the lock to the
//! next process with `OwnerDied`, which needs no repair.
//!
//! A message is taken exactly when `head` moves past it, so a consumer does everything
//! that can block, or let another process run in its place, *before* that store: it
//! copies the message out (a socket message is only peeked, and dropped from the socket
//! after the commit), then wakes sleeping producers, then commits. Waking first matters:
//! the woken producer may preempt the consumer, and a consumer killed then has taken
//! nothing. A producer woken while the ring is still full yields briefly for the commit
//! that follows; one that falls asleep anyway bumps `PUT_SLEEPS`, and only then does the
//! consumer wake producers again after its commit.
//!
//! Messages that carry descriptors, or too large for the ring, travel as one
//! `SOCK_SEQPACKET` message (payload inline, or in a sealed memfd) with a fresh number;
//! the ring holds a marker with that number. A consumer taking a marker drops socket
//! messages until the one with its number: older ones were orphaned by a producer that
//! died between send and commit, or left by a consumer that died after its commit; if
//! its own is gone, the marker is skipped.
//!
//! Every process using the queue maps the ring, a task's too, so a task that scribbles
//! over its memory can overwrite `head` or `tail`: each is checked where it is loaded to
//! be a record's start inside the ring, with no more messages between them than the ring
//! can hold (`check_positions`), and a queue where one is not
//! fails every `put` and `get` with an error naming it corrupt, never a read or write
//! outside the ring.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::region::{HEADER, Kind, Region};
use crate::sync::{LockError, Wait, lock_raw};
use crate::sys::{self, mutex, shm};

const PUT_MUTEX_AT: usize = HEADER;
const GET_MUTEX_AT: usize = 128;
const TAIL_AT: usize = 192;
const GETTERS_WAITING_AT: usize = 200;
const GET_SIGNAL_AT: usize = 204;
const HEAD_AT: usize = 256;
const PUTTERS_WAITING_AT: usize = 264;
const PUT_SIGNAL_AT: usize = 268;
/// Counts producers about to sleep: a consumer that sees it move between its wake-up call
/// and its commit wakes them again (the one system call it may make after a commit).
const PUT_SLEEPS_AT: usize = 272;
const CAP_AT: usize = 320;
const MAXSIZE_AT: usize = 324;
const SHUTDOWN_AT: usize = 328;
/// The values of the word at `SHUTDOWN_AT` past 0 (running).
const SHUT_DOWN: u32 = 1;
const SHUT_DOWN_IMMEDIATELY: u32 = 2;
/// Numbers socket messages; bumped under the put lock *before* a send, so a message
/// orphaned by a producer that died before committing keeps a number no marker has.
const PACKET_ID_AT: usize = 332;
pub(crate) const UNFINISHED_AT: usize = 384;
const DATA_AT: usize = 4096;

const TAG_INLINE: u32 = 0;
const TAG_SOCKET: u32 = 1;
const FLAG_MEMFD: u32 = 1;

/// The largest payload sent inline in a socket message; larger ones go in a memfd.
const INLINE_MAX: usize = 48 * 1024;
/// How long a non-blocking call waits for a mutex held by another process's quick step.
const NOWAIT_LOCK: Duration = Duration::from_millis(20);
/// Idle checks a consumer makes before it sleeps, to catch a producer that is about to commit.
const SPINS: u32 = 200;
/// How long a producer woken while the queue is still full yields, rather than sleeps,
/// waiting for the commit of the consumer that woke it (which wakes before it commits).
const COMMIT_SPIN: Duration = Duration::from_millis(2);

/// The default ring size.
pub(crate) const DEFAULT_CAPACITY: usize = 1 << 20;

fn seq(word: u64) -> u32 {
    word as u32
}
fn pos(word: u64) -> usize {
    (word >> 32) as usize
}
fn pack(seq: u32, pos: usize) -> u64 {
    ((pos as u64) << 32) | seq as u64
}
/// Whether `p` can be where a record starts in a ring of `cap` bytes.
fn is_record_start(p: usize, cap: usize) -> bool {
    p < cap && p.is_multiple_of(8)
}
fn pad8(n: usize) -> usize {
    n.next_multiple_of(8)
}

/// How long an operation may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Patience {
    /// Return at once if it cannot proceed.
    No,
    /// As `No`, and do not wait for a lock either (another consumer may hold the get lock
    /// while it sleeps): an async call's attempt, which must never block its thread.
    Try,
    /// Wait until this instant (`None`: forever).
    Until(Option<Instant>),
}

impl Patience {
    fn deadline(self) -> Option<Instant> {
        match self {
            Patience::No | Patience::Try => None,
            Patience::Until(d) => d,
        }
    }
}

/// Why a ring operation did not complete. A put that waited in vain is `Full` and a get
/// `Empty`, whether it waited or not, as Python's `queue.Full` and `queue.Empty`.
#[derive(Debug)]
pub(crate) enum RingError {
    Full,
    Empty,
    ShutDown,
    Io(io::Error),
}

impl From<io::Error> for RingError {
    fn from(e: io::Error) -> RingError {
        RingError::Io(e)
    }
}

/// One process's view of a queue's shared state.
pub(crate) struct Ring {
    pub(crate) region: Region,
    /// Producers send socket messages here…
    pub(crate) tx: OwnedFd,
    /// …and consumers receive them here.
    pub(crate) rx: OwnedFd,
    cap: usize,
    maxsize: u32,
}

impl Ring {
    /// A new, empty queue: `maxsize` messages at most (0: no limit), `cap` ring bytes.
    pub(crate) fn create(tag: u64, maxsize: u32, cap: usize) -> io::Result<Ring> {
        let cap = pad8(cap.clamp(4096, 1 << 30));
        let region = Region::create(Kind::Queue, tag, DATA_AT + cap)?;
        let map = region.map();
        mutex::init(map, PUT_MUTEX_AT, false)?;
        mutex::init(map, GET_MUTEX_AT, false)?;
        map.atomic_u32(CAP_AT).store(cap as u32, SeqCst);
        map.atomic_u32(MAXSIZE_AT).store(maxsize, SeqCst);
        let (tx, rx) = sys::packet::pair()?;
        Ok(Ring { region, tx, rx, cap, maxsize })
    }

    /// A queue received from another process; checks its layout.
    pub(crate) fn open(region: Region, tx: OwnedFd, rx: OwnedFd) -> Result<Ring, String> {
        let map = region.map();
        let cap = map.atomic_u32(CAP_AT).load(SeqCst) as usize;
        if cap < 4096 || !cap.is_multiple_of(8) || DATA_AT + cap > map.len() {
            return Err(format!("queue memory of {} bytes does not hold its {cap}-byte ring", map.len()));
        }
        let maxsize = map.atomic_u32(MAXSIZE_AT).load(SeqCst);
        Ok(Ring { region, tx, rx, cap, maxsize })
    }

    fn word32(&self, at: usize) -> &AtomicU32 {
        self.region.map().atomic_u32(at)
    }
    fn word64(&self, at: usize) -> &AtomicU64 {
        self.region.map().atomic_u64(at)
    }

    pub(crate) fn maxsize(&self) -> u32 {
        self.maxsize
    }

    /// Messages in the ring now.
    pub(crate) fn len(&self) -> u32 {
        let head = self.word64(HEAD_AT).load(SeqCst);
        let tail = self.word64(TAIL_AT).load(SeqCst);
        seq(tail).wrapping_sub(seq(head))
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.word32(SHUTDOWN_AT).load(SeqCst) != 0
    }

    fn is_shut_down_now(&self) -> bool {
        self.word32(SHUTDOWN_AT).load(SeqCst) == SHUT_DOWN_IMMEDIATELY
    }

    /// Marks the queue shut down for every process and wakes every waiter. `immediate`
    /// also drops every queued message, so gets fail at once; returns how many it dropped.
    pub(crate) fn shut_down(&self, immediate: bool) -> Result<u32, RingError> {
        let state = if immediate { SHUT_DOWN_IMMEDIATELY } else { SHUT_DOWN };
        self.word32(SHUTDOWN_AT).fetch_max(state, SeqCst);
        for at in [GET_SIGNAL_AT, PUT_SIGNAL_AT] {
            self.word32(at).fetch_add(1, SeqCst);
            sys::futex::wake_all(self.word32(at));
        }
        if immediate { self.drop_all() } else { Ok(0) }
    }

    /// Drops every queued message (and its socket copy). Holding the put lock first waits
    /// out a producer that checked the shutdown word before it was set; consumers holding
    /// the get lock were woken by the shutdown and let it go.
    fn drop_all(&self) -> Result<u32, RingError> {
        let _put = self.lock(PUT_MUTEX_AT, Patience::Until(None))?;
        let _get = self.lock(GET_MUTEX_AT, Patience::Until(None))?;
        let dropped = self.len();
        self.word64(HEAD_AT).store(self.word64(TAIL_AT).load(SeqCst), SeqCst);
        while sys::packet::peek(self.rx.as_fd(), &mut [0u8; 4])?.is_some() {
            self.discard_packet();
        }
        Ok(dropped)
    }

    pub(crate) fn unfinished(&self) -> &AtomicU32 {
        self.word32(UNFINISHED_AT)
    }

    fn lock(&self, at: usize, patience: Patience) -> Result<Held<'_>, RingError> {
        let wait = match patience {
            Patience::No => Wait::For(NOWAIT_LOCK),
            Patience::Try => Wait::Not,
            Patience::Until(None) => Wait::Forever,
            Patience::Until(Some(d)) => match d.checked_duration_since(Instant::now()) {
                Some(left) => Wait::For(left),
                None => Wait::Not,
            },
        };
        match lock_raw(self.region.map(), at, wait) {
            Ok(owner_died) => {
                if owner_died && at == GET_MUTEX_AT {
                    // Only the get-lock holder sleeps on the getters' signal, and it is dead.
                    self.word32(GETTERS_WAITING_AT).store(0, SeqCst);
                }
                Ok(Held { ring: self, at })
            }
            Err(LockError::TimedOut) if at == GET_MUTEX_AT => Err(RingError::Empty),
            Err(LockError::TimedOut) => Err(RingError::Full),
            Err(LockError::WouldDeadlock) => Err(RingError::Io(io::Error::other("queue lock re-entered"))),
            Err(LockError::Io(e)) => Err(RingError::Io(e)),
            Err(LockError::OwnerDied(_)) => unreachable!("lock_raw reports a dead owner as Ok(true)"),
        }
    }

    /// `Err` naming the queue corrupt when `head` or `tail` holds a position no process
    /// using the queue writes (outside the ring, or not at a record's start): the ring is
    /// in memory every process using the queue maps, so a task that scribbles over its
    /// memory can overwrite them, and reading a record there would read out of the ring.
    fn check_positions(&self, head: u64, tail: u64) -> Result<(), RingError> {
        // Every record takes 8 bytes at least: no more messages than that fit.
        let count = seq(tail).wrapping_sub(seq(head)) as usize;
        if is_record_start(pos(head), self.cap) && is_record_start(pos(tail), self.cap) && count <= self.cap / 8 {
            return Ok(());
        }
        Err(RingError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "corrupt queue: its positions (head {:#x}, tail {:#x}) or its count of {count} messages do not \
                 fit its ring of {} bytes; a process using it overwrote them",
                pos(head),
                pos(tail),
                self.cap
            ),
        )))
    }

    fn used(&self, head: u64, tail: u64) -> usize {
        if seq(tail) == seq(head) {
            return 0;
        }
        match (pos(tail) + self.cap - pos(head)) % self.cap {
            0 => self.cap,
            n => n,
        }
    }

    /// Whether a payload of `len` bytes with `nfds` descriptors goes through the socket.
    pub(crate) fn via_socket(&self, len: usize, nfds: usize) -> bool {
        nfds > 0 || 8 + pad8(len) > self.cap / 4
    }

    /// Adds one message. `patience` bounds the wait for room (and for the put lock).
    pub(crate) fn put(&self, bytes: &[u8], fds: &mut Vec<OwnedFd>, patience: Patience) -> Result<(), RingError> {
        let socket = self.via_socket(bytes.len(), fds.len());
        let memfd = if socket && bytes.len() > INLINE_MAX { Some(shm::sealed_memfd_with(bytes)?) } else { None };
        let need = if socket { 8 } else { 8 + pad8(bytes.len()) };
        let head_w = self.word64(HEAD_AT);
        let tail_w = self.word64(TAIL_AT);
        loop {
            let held = self.lock(PUT_MUTEX_AT, patience)?;
            if self.is_shut_down() {
                return Err(RingError::ShutDown);
            }
            let head = head_w.load(SeqCst);
            let tail = tail_w.load(SeqCst);
            self.check_positions(head, tail)?;
            let count = seq(tail).wrapping_sub(seq(head));
            let full = (self.maxsize > 0 && count >= self.maxsize) || self.cap - self.used(head, tail) < need;
            if !full {
                let p = pos(tail);
                let s = seq(tail);
                if socket {
                    let id = self.word32(PACKET_ID_AT).fetch_add(1, SeqCst);
                    self.send_packet(id, bytes, fds, memfd.as_ref(), patience.deadline())?;
                    self.write_record(p, id, TAG_SOCKET, &[]);
                } else {
                    self.write_record(p, bytes.len() as u32, TAG_INLINE, bytes);
                }
                tail_w.store(pack(s.wrapping_add(1), (p + need) % self.cap), SeqCst);
                drop(held);
                if self.word32(GETTERS_WAITING_AT).load(SeqCst) > 0 {
                    self.word32(GET_SIGNAL_AT).fetch_add(1, SeqCst);
                    sys::futex::wake(self.word32(GET_SIGNAL_AT), 1);
                }
                return Ok(());
            }
            if let Patience::No | Patience::Try = patience {
                return Err(RingError::Full);
            }
            // Sleep without the lock, so a non-blocking put elsewhere sees "full" at once.
            let waiting = self.word32(PUTTERS_WAITING_AT);
            let signal = self.word32(PUT_SIGNAL_AT);
            waiting.fetch_add(1, SeqCst);
            let seen = signal.load(SeqCst);
            drop(held);
            let sleeps = self.word32(PUT_SLEEPS_AT);
            let r = self.sleep(signal, seen, patience.deadline(), RingError::Full, || {
                sleeps.fetch_add(1, SeqCst);
                head_w.load(SeqCst) == head
            });
            waiting.fetch_sub(1, SeqCst);
            r?;
            if signal.load(SeqCst) != seen {
                self.await_commit(head);
            }
        }
    }

    /// Yields, for [`COMMIT_SPIN`] at most, until `head` moves on: a consumer wakes
    /// producers just before its commit.
    fn await_commit(&self, head: u64) {
        let until = Instant::now() + COMMIT_SPIN;
        while self.word64(HEAD_AT).load(SeqCst) == head && Instant::now() < until && !self.is_shut_down() {
            std::thread::yield_now();
        }
    }

    /// Sleeps on `signal` while it reads `seen` and `unchanged()` holds, one slice at most;
    /// fails with `gave_up` once `deadline` has passed.
    fn sleep(
        &self,
        signal: &AtomicU32,
        seen: u32,
        deadline: Option<Instant>,
        gave_up: RingError,
        unchanged: impl Fn() -> bool,
    ) -> Result<(), RingError> {
        let slice = match deadline {
            None => crate::sync::WAIT_SLICE,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(l) if !l.is_zero() => l.min(crate::sync::WAIT_SLICE),
                _ => return Err(gave_up),
            },
        };
        if unchanged() && !self.is_shut_down() {
            sys::futex::wait(signal, seen, Some(slice))?;
        }
        Ok(())
    }

    /// Writes a record at `p`: its header (`word`: the payload length, or for a marker the
    /// socket message's number) and payload.
    fn write_record(&self, p: usize, word: u32, tag: u32, payload: &[u8]) {
        let map = self.region.map();
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&word.to_le_bytes());
        header[4..].copy_from_slice(&tag.to_le_bytes());
        map.write_bytes(DATA_AT + p, &header);
        let start = (p + 8) % self.cap;
        let first = payload.len().min(self.cap - start);
        map.write_bytes(DATA_AT + start, &payload[..first]);
        if first < payload.len() {
            map.write_bytes(DATA_AT, &payload[first..]);
        }
    }

    fn send_packet(
        &self,
        id: u32,
        bytes: &[u8],
        fds: &mut Vec<OwnedFd>,
        memfd: Option<&OwnedFd>,
        deadline: Option<Instant>,
    ) -> Result<(), RingError> {
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&id.to_le_bytes());
        head[4..].copy_from_slice(&(if memfd.is_some() { FLAG_MEMFD } else { 0 }).to_le_bytes());
        let inline: &[u8] = if memfd.is_some() { &[] } else { bytes };
        let mut all: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        if let Some(m) = memfd {
            all.push(m.as_fd());
        }
        loop {
            match sys::sock::send(self.tx.as_fd(), &[IoSlice::new(&head), IoSlice::new(inline)], &all, true) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = match deadline {
                        None => None,
                        Some(d) => match d.checked_duration_since(Instant::now()) {
                            Some(l) if !l.is_zero() => Some(l),
                            _ => return Err(RingError::Full),
                        },
                    };
                    sys::fd::wait_ready(self.tx.as_fd(), sys::fd::Readiness::Write, left)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        drop(all);
        fds.clear();
        Ok(())
    }

    /// Takes one message into `out` (and its descriptors into `fds`).
    #[cfg(test)]
    pub(crate) fn get(&self, out: &mut Vec<u8>, fds: &mut Vec<OwnedFd>, patience: Patience) -> Result<(), RingError> {
        self.get_with(out, fds, patience, |_, _| ())
    }

    /// Takes one message: copies it into `out` (its descriptors into `fds`) and returns
    /// what `accept` makes of it, called before the message leaves the queue.
    ///
    /// Everything that can block or let another process run (copying out, looking at the
    /// socket message, decoding, waking producers) comes before the commit of `head`;
    /// after it, no system call unless a producer started to sleep meanwhile. So a
    /// consumer killed while a producer it woke runs in its place has not taken the message.
    pub(crate) fn get_with<R>(
        &self,
        out: &mut Vec<u8>,
        fds: &mut Vec<OwnedFd>,
        patience: Patience,
        accept: impl FnOnce(&[u8], &mut Vec<OwnedFd>) -> R,
    ) -> Result<R, RingError> {
        let head_w = self.word64(HEAD_AT);
        let held = self.lock(GET_MUTEX_AT, patience)?;
        let mut accept = Some(accept);
        loop {
            let head = self.wait_for_message(patience)?;
            let p = pos(head);
            let (word, tag) = self.read_header(p);
            let len = if tag == TAG_INLINE { word as usize } else { 0 };
            let next = pack(seq(head).wrapping_add(1), (p + 8 + pad8(len)) % self.cap);
            let got = match tag {
                TAG_INLINE if len <= self.cap / 4 => {
                    self.read_payload(p, len, out);
                    Ok(true)
                }
                TAG_SOCKET => self.peek_packet(word, out, fds),
                _ => Err(RingError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("corrupt queue record (tag {tag}, word {word})"),
                ))),
            };
            // A panic in `accept` (a user's Deserialize) still takes the message, as an
            // error would: it must not stay at the front for every later get.
            let accepted = match (&got, accept.take()) {
                (Ok(true), Some(f)) => Some(std::panic::catch_unwind(AssertUnwindSafe(|| f(out, fds)))),
                (_, f) => {
                    accept = f;
                    None
                }
            };
            let sleeps = self.wake_putters();
            head_w.store(next, SeqCst);
            if tag == TAG_SOCKET && !matches!(got, Ok(false)) {
                // Committed: the message is ours, its socket copy can go.
                self.discard_packet();
            }
            self.wake_putters_again(sleeps);
            got?;
            // No value yet: its message went with a consumer that died; take the next.
            if let Some(value) = accepted {
                drop(held);
                return Ok(value.unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            }
        }
    }

    /// Waits, holding the get lock, until the ring holds a message; returns `head`.
    fn wait_for_message(&self, patience: Patience) -> Result<u64, RingError> {
        let head_w = self.word64(HEAD_AT);
        let tail_w = self.word64(TAIL_AT);
        let mut spins = 0;
        loop {
            if self.is_shut_down_now() {
                return Err(RingError::ShutDown);
            }
            let head = head_w.load(SeqCst);
            let tail = tail_w.load(SeqCst);
            self.check_positions(head, tail)?;
            if seq(tail) != seq(head) {
                return Ok(head);
            }
            if self.is_shut_down() {
                return Err(RingError::ShutDown);
            }
            if let Patience::No | Patience::Try = patience {
                return Err(RingError::Empty);
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                if spins % 32 == 0 {
                    std::thread::yield_now();
                }
                continue;
            }
            let waiting = self.word32(GETTERS_WAITING_AT);
            let signal = self.word32(GET_SIGNAL_AT);
            waiting.fetch_add(1, SeqCst);
            let seen = signal.load(SeqCst);
            let r = self.sleep(signal, seen, patience.deadline(), RingError::Empty, || tail_w.load(SeqCst) == tail);
            waiting.fetch_sub(1, SeqCst);
            r?;
        }
    }

    /// Waits at most `slice`, as a blocking get does (behind the get lock, then on the
    /// getters' signal), until the ring holds a message, and takes nothing; whether the
    /// wait should end: a message is in, the queue is shut down, or something failed (the
    /// async get's next try says what). The helper thread of an async get.
    pub(crate) fn await_message(&self, slice: Duration) -> bool {
        let until = Patience::Until(Some(Instant::now() + slice));
        let _held = match self.lock(GET_MUTEX_AT, until) {
            Ok(held) => held,
            Err(RingError::Empty) => return false,
            Err(_) => return true,
        };
        !matches!(self.wait_for_message(until), Err(RingError::Empty))
    }

    /// The consumers' position now: a put that found the ring full may succeed once it moves.
    pub(crate) fn head(&self) -> u64 {
        self.word64(HEAD_AT).load(SeqCst)
    }

    /// Waits at most `slice`, as a blocking put does (on the producers' signal, without
    /// the lock), until the consumers' position is no longer `seen` or the queue is shut
    /// down; whether it is. The helper thread of an async put.
    pub(crate) fn await_head_change(&self, seen: u64, slice: Duration) -> bool {
        let head_w = self.word64(HEAD_AT);
        if head_w.load(SeqCst) != seen || self.is_shut_down() {
            return true;
        }
        let waiting = self.word32(PUTTERS_WAITING_AT);
        let signal = self.word32(PUT_SIGNAL_AT);
        waiting.fetch_add(1, SeqCst);
        let at = signal.load(SeqCst);
        let sleeps = self.word32(PUT_SLEEPS_AT);
        let r = self.sleep(signal, at, Some(Instant::now() + slice), RingError::Full, || {
            sleeps.fetch_add(1, SeqCst);
            head_w.load(SeqCst) == seen
        });
        waiting.fetch_sub(1, SeqCst);
        r.is_err_and(|e| !matches!(e, RingError::Full)) || head_w.load(SeqCst) != seen || self.is_shut_down()
    }

    /// Before a commit: wakes sleeping producers (they wait for it, see `put`). Returns
    /// the producers' sleep count, for [`wake_putters_again`](Ring::wake_putters_again).
    fn wake_putters(&self) -> u32 {
        let sleeps = self.word32(PUT_SLEEPS_AT).load(SeqCst);
        if self.word32(PUTTERS_WAITING_AT).load(SeqCst) > 0 {
            self.word32(PUT_SIGNAL_AT).fetch_add(1, SeqCst);
            sys::futex::wake_all(self.word32(PUT_SIGNAL_AT));
        }
        sleeps
    }

    /// After a commit: wakes producers again only if one went to sleep since
    /// `wake_putters` (it may have seen the old `head`).
    fn wake_putters_again(&self, sleeps: u32) {
        if self.word32(PUT_SLEEPS_AT).load(SeqCst) != sleeps && self.word32(PUTTERS_WAITING_AT).load(SeqCst) > 0 {
            self.word32(PUT_SIGNAL_AT).fetch_add(1, SeqCst);
            sys::futex::wake_all(self.word32(PUT_SIGNAL_AT));
        }
    }

    fn read_header(&self, p: usize) -> (u32, u32) {
        let mut h = [0u8; 8];
        self.region.map().read_bytes(DATA_AT + p, &mut h);
        (u32::from_le_bytes(h[..4].try_into().unwrap()), u32::from_le_bytes(h[4..].try_into().unwrap()))
    }

    fn read_payload(&self, p: usize, len: usize, out: &mut Vec<u8>) {
        let map = self.region.map();
        out.clear();
        out.resize(len, 0);
        let start = (p + 8) % self.cap;
        let first = len.min(self.cap - start);
        map.read_bytes(DATA_AT + start, &mut out[..first]);
        if first < len {
            map.read_bytes(DATA_AT, &mut out[first..]);
        }
    }

    /// Copies the socket message numbered `want`, leaving it in the socket until the
    /// commit ([`discard_packet`](Ring::discard_packet)); `false` if it is gone. Older
    /// messages, orphaned by producers that died before committing, are dropped.
    fn peek_packet(&self, want: u32, out: &mut Vec<u8>, fds: &mut Vec<OwnedFd>) -> Result<bool, RingError> {
        let rx = self.rx.as_fd();
        loop {
            let mut peek = [0u8; 4];
            let Some(n) = sys::packet::peek(rx, &mut peek)? else { return Ok(false) };
            let s = if n >= 4 { u32::from_le_bytes(peek) } else { want.wrapping_sub(1) };
            let ahead = s.wrapping_sub(want) as i32;
            if ahead > 0 {
                return Ok(false);
            }
            if ahead < 0 {
                self.discard_packet();
                continue;
            }
            out.clear();
            out.resize(INLINE_MAX + 64, 0);
            let mut got = Vec::new();
            let n = sys::sock::peek(rx, out, &mut got)?;
            out.truncate(n);
            let flags = if n >= 8 { u32::from_le_bytes(out[4..8].try_into().unwrap()) } else { 0 };
            if flags & FLAG_MEMFD != 0 {
                let Some(memfd) = got.pop() else {
                    return Err(RingError::Io(io::Error::new(io::ErrorKind::InvalidData, "message memory missing")));
                };
                shm::read_sealed(memfd.as_fd(), out)?;
            } else {
                out.drain(..8.min(n));
            }
            fds.extend(got);
            return Ok(true);
        }
    }

    /// Drops the socket message at the front (its descriptors are closed).
    fn discard_packet(&self) {
        let mut head = [0u8; 8];
        let _ = sys::sock::recv(self.rx.as_fd(), &mut head, &mut Vec::new(), true);
    }
}

/// A held queue mutex.
struct Held<'a> {
    ring: &'a Ring,
    at: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = mutex::unlock(self.ring.region.map(), self.at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_dying_with_the_lock_hands_it_on_and_loses_nothing() {
        let ring = std::sync::Arc::new(Ring::create(0, 0, 4096).unwrap());
        ring.put(b"one", &mut Vec::new(), Patience::No).unwrap();
        let r = ring.clone();
        // The thread ends holding the consumers' lock, as a killed process would.
        std::thread::spawn(move || {
            assert!(matches!(lock_raw(r.region.map(), GET_MUTEX_AT, Wait::Forever), Ok(false)));
            r.word32(GETTERS_WAITING_AT).fetch_add(1, SeqCst);
        })
        .join()
        .unwrap();
        let mut out = Vec::new();
        ring.get(&mut out, &mut Vec::new(), Patience::Until(None)).unwrap();
        assert_eq!(out, b"one");
        assert_eq!(ring.word32(GETTERS_WAITING_AT).load(SeqCst), 0, "the dead sleeper's count is cleared");
    }

    #[test]
    fn an_orphaned_socket_message_is_skipped_and_a_taken_one_does_not_block() {
        let ring = Ring::create(0, 0, 4096).unwrap();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        // A producer that died after sending but before committing leaves an orphan.
        let id = ring.word32(PACKET_ID_AT).fetch_add(1, SeqCst);
        ring.send_packet(id, b"orphan", &mut vec![OwnedFd::from(a.try_clone().unwrap())], None, None).unwrap();
        ring.put(b"real", &mut vec![OwnedFd::from(a)], Patience::No).unwrap();
        let (mut out, mut fds) = (Vec::new(), Vec::new());
        ring.get(&mut out, &mut fds, Patience::No).unwrap();
        assert_eq!((out.as_slice(), fds.len()), (&b"real"[..], 1));
        // A marker whose socket message a dead consumer took is skipped, not waited for.
        ring.put(b"gone", &mut vec![fds.pop().unwrap()], Patience::No).unwrap();
        let mut stolen = vec![0u8; 100];
        sys::sock::recv(ring.rx.as_fd(), &mut stolen, &mut Vec::new(), true).unwrap();
        ring.put(b"after", &mut Vec::new(), Patience::No).unwrap();
        ring.get(&mut out, &mut fds, Patience::No).unwrap();
        assert_eq!(out, b"after");
    }

    #[test]
    fn a_socket_message_looked_at_but_not_committed_stays_for_the_next_consumer() {
        let ring = Ring::create(0, 0, 4096).unwrap();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        ring.put(b"kept", &mut vec![OwnedFd::from(a)], Patience::No).unwrap();
        // A consumer that dies before its commit has only looked at the message.
        let (mut out, mut fds) = (Vec::new(), Vec::new());
        assert!(ring.peek_packet(0, &mut out, &mut fds).unwrap());
        drop(fds);
        let mut fds = Vec::new();
        ring.get(&mut out, &mut fds, Patience::No).unwrap();
        assert_eq!((out.as_slice(), fds.len()), (&b"kept"[..], 1));
        assert!(sys::packet::peek(ring.rx.as_fd(), &mut [0u8; 4]).unwrap().is_none(), "taken from the socket too");
    }

    #[test]
    fn a_message_whose_decoding_panics_is_taken_all_the_same() {
        let ring = Ring::create(0, 0, 4096).unwrap();
        ring.put(b"bad", &mut Vec::new(), Patience::No).unwrap();
        ring.put(b"good", &mut Vec::new(), Patience::No).unwrap();
        let (mut out, mut fds) = (Vec::new(), Vec::new());
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            ring.get_with(&mut out, &mut fds, Patience::No, |_, _| panic!("a Deserialize that panics"))
        }));
        assert!(r.is_err());
        let got = ring.get_with(&mut out, &mut fds, Patience::No, |bytes, _| bytes.to_vec()).unwrap();
        assert_eq!(got, b"good");
    }

    #[test]
    fn a_message_larger_than_the_ring_travels_in_memory_beside_it() {
        let ring = Ring::create(0, 0, 4096).unwrap();
        let big = vec![7u8; 100_000];
        ring.put(&big, &mut Vec::new(), Patience::No).unwrap();
        let mut out = Vec::new();
        ring.get(&mut out, &mut Vec::new(), Patience::No).unwrap();
        assert_eq!(out, big);
    }
}
