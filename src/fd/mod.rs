//! `Fd`: an owned file descriptor that can travel to another process.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::wire::fds;

/// Any owned file descriptor — a [`File`], a [`TcpStream`], an [`OwnedFd`], … — as a
/// value that can be sent to another process: as (part of) a
/// [`Process`](crate::Process) argument, on a [`Queue`](crate::Queue) or a
/// [`Connection`](crate::Connection). The descriptor is passed with `SCM_RIGHTS`, so the
/// receiver gets its own descriptor for the same open file or socket.
///
/// Sending duplicates the descriptor: the sender's `Fd` stays open until dropped.
///
/// ```
/// use std::io::{Read, Seek, Write};
/// use multiproc::{Fd, Process};
///
/// fn write_hello(fd: Fd) {
///     let mut file = fd.into_file();
///     file.write_all(b"hello from the child").unwrap();
/// }
///
/// multiproc::init();
/// let path = std::env::temp_dir().join(format!("fd-doc-{}", std::process::id()));
/// let file = std::fs::File::options().read(true).write(true).create(true).truncate(true).open(&path)?;
/// std::fs::remove_file(&path)?;
/// let mut p = Process::new(write_hello, Fd::from(file.try_clone()?));
/// p.start()?;
/// p.join()?;
/// let mut text = String::new();
/// let mut file = file;
/// file.rewind()?;
/// file.read_to_string(&mut text)?;
/// assert_eq!(text, "hello from the child");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Fd(OwnedFd);

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fd").field(&self.0.as_raw_fd()).finish()
    }
}

impl Fd {
    /// Wraps anything that owns a descriptor.
    ///
    /// ```
    /// multiproc::init();
    /// let f = multiproc::Fd::new(std::fs::File::open("/dev/null")?);
    /// drop(f);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(fd: impl Into<OwnedFd>) -> Fd {
        Fd(fd.into())
    }

    /// Another `Fd` for the same open file (`dup`).
    ///
    /// ```
    /// multiproc::init();
    /// let f = multiproc::Fd::new(std::fs::File::open("/dev/null")?);
    /// let g = f.try_clone()?; // another descriptor, same open file
    /// drop((f, g));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_clone(&self) -> io::Result<Fd> {
        Ok(Fd(self.0.try_clone()?))
    }

    /// The descriptor.
    ///
    /// ```
    /// multiproc::init();
    /// let f = multiproc::Fd::new(std::fs::File::open("/dev/null")?);
    /// let owned: std::os::fd::OwnedFd = f.into_owned_fd();
    /// drop(owned);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_owned_fd(self) -> OwnedFd {
        self.0
    }

    /// As a [`File`] (for any descriptor that reads or writes like one).
    ///
    /// ```
    /// multiproc::init();
    /// use std::io::Read;
    /// let f = multiproc::Fd::new(std::fs::File::open("/dev/null")?);
    /// let mut s = String::new();
    /// f.into_file().read_to_string(&mut s)?;
    /// assert!(s.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_file(self) -> File {
        File::from(self.0)
    }

    /// As a [`TcpStream`] (for a descriptor that is a connected TCP socket).
    ///
    /// ```
    /// multiproc::init();
    /// let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let s = std::net::TcpStream::connect(l.local_addr()?)?;
    /// let s = multiproc::Fd::from(s).into_tcp_stream();
    /// assert_eq!(s.peer_addr()?, l.local_addr()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_tcp_stream(self) -> TcpStream {
        TcpStream::from(self.0)
    }

    /// As a [`TcpListener`].
    ///
    /// ```
    /// multiproc::init();
    /// let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let f = multiproc::Fd::from(l);
    /// let l = f.into_tcp_listener();
    /// assert!(l.local_addr()?.port() > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_tcp_listener(self) -> TcpListener {
        TcpListener::from(self.0)
    }

    /// As a [`UnixStream`].
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = std::os::unix::net::UnixStream::pair()?;
    /// let a = multiproc::Fd::from(a).into_unix_stream();
    /// drop((a, b));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_unix_stream(self) -> UnixStream {
        UnixStream::from(self.0)
    }
}

macro_rules! from_owner {
    ($($t:ty),*) => { $(
        impl From<$t> for Fd {
            fn from(v: $t) -> Fd {
                Fd(OwnedFd::from(v))
            }
        }
    )* };
}
from_owner!(File, TcpStream, TcpListener, UdpSocket, UnixStream, UnixListener, std::process::ChildStdout);

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Fd {
        Fd(fd)
    }
}

impl From<Fd> for OwnedFd {
    fn from(fd: Fd) -> OwnedFd {
        fd.0
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fds::attach(self.0.as_fd()).map_err(serde::ser::Error::custom)?.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fd, D::Error> {
        let index = u32::deserialize(d)?;
        fds::take(index).map(Fd).map_err(D::Error::custom)
    }
}
