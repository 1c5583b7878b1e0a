//! `Pipe` and `Connection`: a typed, framed two-way channel between two processes.
//!
//! A pipe is a Unix stream socketpair; each message is one frame (8-byte header +
//! postcard payload) sent with one `sendmsg`, so a round trip costs what a raw
//! socketpair round trip costs plus encoding. Descriptors inside messages (an [`Fd`](crate::Fd),
//! a [`Queue`](crate::Queue), another `Connection`…) travel as `SCM_RIGHTS`.

mod nonblocking;
mod sentinel;
mod wait;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use nonblocking::{Recv, Sending};
pub use sentinel::Joined;
pub use wait::{Ready, wait};

use crate::sys;
use crate::wire::frame::{Channel, FrameReader, FrameWriter, REPLY_SPIN};
use crate::wire::{CodecError, DEFAULT_MAX_FRAME, FrameError, fds};

/// Frame kind of a message sent with `send` (a serialized value).
const KIND_VALUE: u8 = crate::wire::kinds::PIPE_VALUE;
/// Frame kind of a message sent with `send_bytes`.
const KIND_BYTES: u8 = crate::wire::kinds::PIPE_BYTES;

/// Why a [`Connection`] call failed.
///
/// ```
/// use multiproc::{Pipe, PipeError};
/// use std::time::Duration;
///
/// multiproc::init();
/// let (a, b) = Pipe::duplex::<u32>()?;
/// assert!(matches!(b.recv_timeout(Duration::from_millis(10)), Err(PipeError::TimedOut)));
/// drop(a);
/// assert!(matches!(b.recv(), Err(PipeError::Closed))); // the other end is gone
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipeError {
    /// The other end is closed: its process exited (or died), or it was dropped.
    #[error("the other end of the pipe is closed (its process ended or dropped it)")]
    Closed,
    /// Nothing arrived before the timeout.
    #[error("timed out waiting on the pipe")]
    TimedOut,
    /// A message arrived but is not a value of the expected type; it was consumed, the
    /// connection goes on.
    #[error("received a message that does not decode: {0}")]
    Decode(CodecError),
    /// The value could not be serialized; nothing was sent.
    #[error("cannot send: {0}")]
    Encode(String),
    /// `send` on the receiving end of a simplex pipe, or `recv` on its sending end.
    #[error("this end of the pipe is {0}")]
    WrongDirection(&'static str),
    /// [`recv_bytes_into`](Connection::recv_bytes_into) got a message larger than its
    /// buffer (Python's `BufferTooShort`): the message was taken, and is here whole.
    #[error("a message of {} bytes does not fit the {capacity}-byte buffer", message.len())]
    BufferTooShort {
        /// The whole message.
        message: Vec<u8>,
        /// The size of the buffer it was to go into.
        capacity: usize,
    },
    /// The byte stream broke the framing (cut short, oversized, malformed).
    #[error("broken message on the pipe: {0}")]
    Frame(FrameError),
    /// The operating system refused.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<FrameError> for PipeError {
    fn from(e: FrameError) -> PipeError {
        match e {
            FrameError::Closed => PipeError::Closed,
            FrameError::TimedOut => PipeError::TimedOut,
            FrameError::Io(e) => PipeError::Io(e),
            other => PipeError::Frame(other),
        }
    }
}

/// Makes pipes, like Python's `multiprocessing.Pipe`.
///
/// ```
/// use multiproc::{Connection, Pipe, Process};
///
/// fn child(conn: Connection<String>) {
///     let got = conn.recv().unwrap();
///     conn.send(format!("{got}, it's me")).unwrap();
/// }
///
/// multiproc::init();
/// let (parent, child_end) = Pipe::duplex::<String>()?;
/// let mut p = Process::new(child, child_end);
/// p.start()?;
/// parent.send("hello".to_string())?;
/// assert_eq!(parent.recv()?, "hello, it's me");
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Pipe;

impl Pipe {
    /// Two connected ends; each can send and receive.
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::duplex::<String>()?;
    /// a.send("ping".into())?;
    /// assert_eq!(b.recv()?, "ping");
    /// b.send("pong".into())?;
    /// assert_eq!(a.recv()?, "pong");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn duplex<T>() -> io::Result<(Connection<T>, Connection<T>)> {
        let (a, b) = UnixStream::pair()?;
        Ok((Connection::from_socket(a.into(), true, true), Connection::from_socket(b.into(), true, true)))
    }

    /// A one-way pipe: `(receiver, sender)`, in Python's order — the first end only
    /// receives, the second only sends.
    ///
    /// ```
    /// multiproc::init();
    /// let (reader, writer) = multiproc::Pipe::simplex::<u32>()?;
    /// writer.send(1)?;
    /// assert_eq!(reader.recv()?, 1);
    /// assert!(writer.recv().is_err()); // one way only
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn simplex<T>() -> io::Result<(Connection<T>, Connection<T>)> {
        let (a, b) = UnixStream::pair()?;
        let _ = a.shutdown(std::net::Shutdown::Write);
        let _ = b.shutdown(std::net::Shutdown::Read);
        Ok((Connection::from_socket(a.into(), true, false), Connection::from_socket(b.into(), false, true)))
    }
}

/// One end of a [`Pipe`], carrying values of type `T` (any serde type; descriptors inside
/// travel along).
///
/// Methods take `&self`: one thread may send while another receives. A connection can
/// itself be sent to another process (as a [`Process`](crate::Process) argument or in a
/// message), which then owns that end. When the process at the other end exits or drops
/// it, [`recv`](Connection::recv) returns [`PipeError::Closed`] instead of hanging.
///
/// ```
/// use multiproc::{Connection, Pipe, Process};
///
/// fn shout(c: Connection<String>) {
///     let words = c.recv().unwrap();
///     c.send(words.to_uppercase()).unwrap();
/// }
///
/// multiproc::init();
/// let (here, there) = Pipe::duplex()?;
/// let mut child = Process::new(shout, there); // one end travels to the child
/// child.start()?;
/// here.send("hello".to_string())?;
/// assert_eq!(here.recv()?, "HELLO");
/// child.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Connection<T> {
    sock: Arc<OwnedFd>,
    reader: Mutex<FrameReader>,
    writer: Mutex<FrameWriter>,
    readable: bool,
    writable: bool,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").field("readable", &self.readable).field("writable", &self.writable).finish()
    }
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Connection<T> {
    fn from_socket(sock: OwnedFd, readable: bool, writable: bool) -> Connection<T> {
        Connection::from_channel(Channel::new(sock, DEFAULT_MAX_FRAME), readable, writable)
    }

    /// A connection over `ch`, keeping what it has already received (e.g. frames that
    /// followed a handshake).
    pub(crate) fn from_channel(mut ch: Channel, readable: bool, writable: bool) -> Connection<T> {
        ch.set_max_frame(DEFAULT_MAX_FRAME);
        let (reader, writer) = ch.split();
        Connection {
            sock: reader.socket().clone(),
            reader: Mutex::new(reader),
            writer: Mutex::new(writer),
            readable,
            writable,
            _t: PhantomData,
        }
    }

    /// Whether this end can receive.
    ///
    /// ```
    /// multiproc::init();
    /// let (reader, writer) = multiproc::Pipe::simplex::<u8>()?;
    /// assert!(reader.readable() && !reader.writable());
    /// assert!(writer.writable() && !writer.readable());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send.
    ///
    /// ```
    /// multiproc::init();
    /// let (a, _b) = multiproc::Pipe::duplex::<u8>()?;
    /// assert!(a.writable() && a.readable());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn writable(&self) -> bool {
        self.writable
    }

    fn check_write(&self) -> Result<(), PipeError> {
        if self.writable { Ok(()) } else { Err(PipeError::WrongDirection("read-only")) }
    }

    fn check_read(&self) -> Result<(), PipeError> {
        if self.readable { Ok(()) } else { Err(PipeError::WrongDirection("write-only")) }
    }

    /// Sends raw bytes as one message (Python's `send_bytes`); the other end reads them
    /// with [`recv_bytes`](Connection::recv_bytes).
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::duplex::<()>()?;
    /// a.send_bytes(b"raw")?;
    /// assert_eq!(b.recv_bytes()?, b"raw");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), PipeError> {
        self.check_write()?;
        let mut w = lock(&self.writer);
        w.queue_bytes(KIND_BYTES, bytes)?;
        Ok(w.flush(None)?)
    }

    fn recv_bytes_until(&self, deadline: Option<Instant>) -> Result<Vec<u8>, PipeError> {
        self.check_read()?;
        let mut r = lock(&self.reader);
        // The answer to what was just sent is usually microseconds away.
        r.spin_fill(REPLY_SPIN, deadline);
        let frame = r.recv(deadline)?;
        Ok(frame.payload.to_vec())
    }

    /// Receives one message as raw bytes, waiting as long as it takes. (For a message
    /// sent with `send`, these are the value's postcard encoding.)
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::duplex::<()>()?;
    /// a.send_bytes(&[1, 2, 3])?;
    /// assert_eq!(b.recv_bytes()?, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_bytes(&self) -> Result<Vec<u8>, PipeError> {
        self.recv_bytes_until(None)
    }

    /// As [`recv_bytes`](Connection::recv_bytes), failing with [`PipeError::TimedOut`]
    /// after `timeout`.
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let (_a, b) = multiproc::Pipe::duplex::<()>()?;
    /// assert!(b.recv_bytes_timeout(Duration::from_millis(10)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, PipeError> {
        self.recv_bytes_until(Some(Instant::now() + timeout))
    }

    /// Receives one message into `buf` (Python's `recv_bytes_into`), waiting as long as
    /// it takes; returns its length. A message longer than `buf` is taken all the same
    /// and returned in [`PipeError::BufferTooShort`]; `buf` is then left as it was.
    ///
    /// ```
    /// use multiproc::{Pipe, PipeError};
    ///
    /// let (a, b) = Pipe::duplex::<()>()?;
    /// a.send_bytes(b"hello")?;
    /// let mut buf = [0u8; 16];
    /// let n = b.recv_bytes_into(&mut buf)?;
    /// assert_eq!(&buf[..n], b"hello");
    /// a.send_bytes(&[1; 32])?;
    /// assert!(matches!(b.recv_bytes_into(&mut buf), Err(PipeError::BufferTooShort { message, .. }) if message.len() == 32));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, PipeError> {
        self.check_read()?;
        let mut r = lock(&self.reader);
        r.spin_fill(REPLY_SPIN, None);
        let frame = r.recv(None)?;
        let n = frame.payload.len();
        match buf.get_mut(..n) {
            Some(into) => {
                into.copy_from_slice(frame.payload);
                Ok(n)
            }
            None => Err(PipeError::BufferTooShort { message: frame.payload.to_vec(), capacity: buf.len() }),
        }
    }

    /// Whether a message (or the end of the stream) is waiting, after waiting at most
    /// `timeout` (`None`: until there is one; `Some(ZERO)`: just look).
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let (a, b) = multiproc::Pipe::duplex::<u8>()?;
    /// assert!(!b.poll(Some(Duration::ZERO))?);
    /// a.send(1)?;
    /// assert!(b.poll(Some(Duration::from_secs(5)))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool, PipeError> {
        self.check_read()?;
        let r = lock(&self.reader);
        if r.has_frame() {
            return Ok(true);
        }
        Ok(sys::fd::wait_ready(self.sock.as_fd(), sys::fd::Readiness::Read, timeout)?)
    }

    pub(crate) fn has_buffered_frame(&self) -> bool {
        self.reader.try_lock().is_ok_and(|r| r.has_frame())
    }
}

impl<T: Serialize> Connection<T> {
    /// Sends `value` as one message. Blocks only while the other end's buffer is full;
    /// fails with [`PipeError::Closed`] if the other end is gone.
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::duplex::<Vec<u32>>()?;
    /// a.send(vec![1, 2])?;
    /// assert_eq!(b.recv()?, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send(&self, value: T) -> Result<(), PipeError> {
        self.check_write()?;
        let mut w = lock(&self.writer);
        match w.queue(KIND_VALUE, &value) {
            Ok(()) => {}
            Err(FrameError::Malformed(m)) => return Err(PipeError::Encode(m)),
            Err(e) => return Err(e.into()),
        }
        Ok(w.flush(None)?)
    }
}

impl<T: DeserializeOwned> Connection<T> {
    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, PipeError> {
        self.check_read()?;
        let mut r = lock(&self.reader);
        // The answer to what was just sent is usually microseconds away.
        r.spin_fill(REPLY_SPIN, deadline);
        let frame = r.recv(deadline)?;
        frame.decode::<T>().map_err(PipeError::Decode)
    }

    /// Receives the next value, waiting as long as it takes — or until the other end is
    /// gone ([`PipeError::Closed`]). A message that does not decode as `T` is consumed
    /// and reported as [`PipeError::Decode`]; the next `recv` reads the next message.
    ///
    /// It polls for up to 30 µs (yielding the CPU between tries) before it sleeps: the
    /// answer to a message just sent usually comes sooner than a sleeping process on
    /// another CPU can be woken, which makes a round trip across CPUs about 5 µs.
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::duplex::<(u8, String)>()?;
    /// a.send((1, "one".into()))?;
    /// assert_eq!(b.recv()?, (1, "one".to_string()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv(&self) -> Result<T, PipeError> {
        self.recv_until(None)
    }

    /// As [`recv`](Connection::recv), failing with [`PipeError::TimedOut`] after `timeout`.
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// let (_a, b) = multiproc::Pipe::duplex::<u8>()?;
    /// assert!(b.recv_timeout(Duration::from_millis(10)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, PipeError> {
        self.recv_until(Some(Instant::now() + timeout))
    }
}

impl<T> AsFd for Connection<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl<T> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = lock(&self.reader);
        if r.buffered() > 0 {
            return Err(serde::ser::Error::custom(
                "cannot send a connection that holds received, unread messages; recv them first",
            ));
        }
        let index = fds::attach(self.sock.as_fd()).map_err(serde::ser::Error::custom)?;
        (index, self.readable, self.writable).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Connection<T>, D::Error> {
        let (index, readable, writable) = <(u32, bool, bool)>::deserialize(d)?;
        let fd = fds::take(index).map_err(D::Error::custom)?;
        Ok(Connection::from_socket(fd, readable, writable))
    }
}
