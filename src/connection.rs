//! Connections between processes that did not start one another, as Python's
//! `multiprocessing.connection`: a [`Listener`] bound to an [`Address`] accepts them, and
//! [`Client`] opens them; either way the result is a [`Connection`], as a [`Pipe`] makes.
//!
//! With an authentication key, both sides prove they know it before anything else is
//! said, by Python's HMAC challenge-response in each direction (here on HMAC-SHA256, as
//! the manager's connections are, under labels of their own). Without one, anyone who
//! can reach the address is let in, as in Python: use a key with a TCP address.
//!
//! Over a Unix socket (an `@name` or a path address) messages may carry descriptors, as
//! through a pipe; over TCP they cannot.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

pub use crate::address::Address;
pub use crate::pipe::{Connection, Pipe, PipeError, Ready, wait};

use crate::address;
use crate::auth::{self, AUTH_MAX_FRAME, AuthError, Scheme};
use crate::wire::FrameError;
use crate::wire::frame::Channel;

/// How long connecting and authenticating may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

const LISTENER: Scheme = Scheme {
    magic: *b"MPCONN\0\x01",
    protocol: 1,
    client_label: b"multiproc-connection client",
    server_label: b"multiproc-connection server",
    server: "a multiproc connection::Listener",
};

/// Why a [`Listener`] or [`Client`] call failed.
///
/// ```
/// use multiproc::connection::{Client, ConnectionError};
///
/// // Nobody listens at this name.
/// let nobody = "@multiproc-doc-nobody-listens".parse()?;
/// let e = Client::connect::<u8>(&nobody, None).unwrap_err();
/// assert!(matches!(e, ConnectionError::Io { .. }));
/// assert!(e.to_string().starts_with("cannot connect to @multiproc-doc-nobody-listens"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer does not know the key (Python's `AuthenticationError`); the connection
    /// was closed.
    #[error("authentication failed: the peer does not know the key")]
    AuthenticationFailed,
    /// The listener could not prove it knows the key; nothing was sent to it.
    #[error("the listener at {0} could not prove it knows the key")]
    ListenerNotAuthenticated(Address),
    /// The peer is not a multiproc listener or client, or speaks another version.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// Binding, connecting or the handshake's messages failed.
    #[error("{what} {address}: {source}")]
    Io {
        /// What was being done: "cannot bind", "cannot connect to"…
        what: &'static str,
        /// Where.
        address: Address,
        /// What the operating system said.
        source: io::Error,
    },
}

fn handshake_error(e: AuthError, address: &Address) -> ConnectionError {
    match e {
        AuthError::Refused => ConnectionError::AuthenticationFailed,
        AuthError::ServerUnproven => ConnectionError::ListenerNotAuthenticated(address.clone()),
        AuthError::Protocol(m) => ConnectionError::Handshake(m),
        AuthError::Frame(FrameError::Io(source)) => {
            ConnectionError::Io { what: "handshake with", address: address.clone(), source }
        }
        AuthError::Frame(e) => ConnectionError::Handshake(e.to_string()),
    }
}

/// A bound socket accepting [`Connection`]s, as Python's `multiprocessing.connection.Listener`.
///
/// ```
/// use multiproc::connection::{Address, Client, Listener};
///
/// let address: Address = "127.0.0.1:0".parse()?; // any free port
/// let listener = Listener::bind(&address, Some(b"secret"))?;
/// let bound = listener.address().clone();
/// let client = std::thread::spawn(move || {
///     let conn = Client::connect::<String>(&bound, Some(b"secret")).unwrap();
///     conn.send("hello".to_string()).unwrap();
/// });
/// let conn = listener.accept::<String>()?;
/// assert_eq!(conn.recv()?, "hello");
/// client.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Listener {
    socket: address::Listener,
    address: Address,
    authkey: Option<Vec<u8>>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener").field("address", &self.address).field("authkey", &self.authkey.is_some()).finish()
    }
}

impl Listener {
    /// Listens at `address` (`host:port`, port 0 for any free one; `@name` for a Unix
    /// socket in the abstract namespace; or a path, for a socket file removed when the
    /// listener is dropped). With `authkey`, every client must prove it knows the key,
    /// and the listener proves it too.
    ///
    /// ```
    /// use multiproc::connection::Listener;
    ///
    /// let path = std::env::temp_dir().join(format!("multiproc-doc-{}.sock", std::process::id()));
    /// let listener = Listener::bind(&multiproc::connection::Address::Path(path.clone()), None)?;
    /// assert!(path.exists());
    /// drop(listener);
    /// assert!(!path.exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bind(address: &Address, authkey: Option<&[u8]>) -> Result<Listener, ConnectionError> {
        let (socket, address) = address::Listener::bind(address).map_err(|source| ConnectionError::Io {
            what: "cannot listen at",
            address: address.clone(),
            source,
        })?;
        Ok(Listener { socket, address, authkey: authkey.map(<[u8]>::to_vec) })
    }

    /// The address it listens at (for port 0, with the port chosen).
    ///
    /// ```
    /// let any: multiproc::connection::Address = "127.0.0.1:0".parse()?;
    /// let listener = multiproc::connection::Listener::bind(&any, None)?;
    /// assert!(listener.address().to_string().starts_with("127.0.0.1:"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for the next client and, with a key, authenticates it (for 30 s at most); a
    /// client that does not know the key gets [`ConnectionError::AuthenticationFailed`]
    /// here and on its side, and its connection is closed.
    ///
    /// ```
    /// use multiproc::connection::{Client, Listener};
    ///
    /// let listener = Listener::bind(&"127.0.0.1:0".parse()?, None)?;
    /// let address = listener.address().clone();
    /// let t = std::thread::spawn(move || Client::connect::<u32>(&address, None).unwrap().recv().unwrap());
    /// listener.accept::<u32>()?.send(42)?;
    /// assert_eq!(t.join().unwrap(), 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn accept<T>(&self) -> Result<Connection<T>, ConnectionError> {
        let io = |source| ConnectionError::Io { what: "cannot accept at", address: self.address.clone(), source };
        let sock = self.socket.accept().map_err(io)?;
        let mut ch = Channel::new(sock, AUTH_MAX_FRAME);
        if let Some(key) = &self.authkey {
            let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
            auth::serve(&mut ch, &LISTENER, key, deadline).map_err(|e| handshake_error(e, &self.address))?;
        }
        Ok(Connection::from_channel(ch, true, true))
    }
}

/// Opens [`Connection`]s to a [`Listener`], as Python's `multiprocessing.connection.Client`.
///
/// ```
/// use multiproc::connection::{Client, ConnectionError, Listener};
///
/// let address = "@multiproc-doc-client".parse()?;
/// let listener = Listener::bind(&address, Some(b"right key"))?;
/// let server = std::thread::spawn(move || listener.accept::<u8>().map(drop));
/// let refused = Client::connect::<u8>(&address, Some(b"wrong key"));
/// assert!(matches!(refused, Err(ConnectionError::AuthenticationFailed)));
/// assert!(matches!(server.join().unwrap(), Err(ConnectionError::AuthenticationFailed)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Connects to the listener at `address` and, with `authkey`, authenticates both
    /// ways (30 s at most for connecting and authenticating). The listener and its
    /// clients must agree on whether there is a key.
    ///
    /// ```
    /// use multiproc::connection::{Client, Listener};
    ///
    /// let address = format!("@multiproc-doc-connect-{}", std::process::id()).parse()?;
    /// let listener = Listener::bind(&address, Some(b"key"))?;
    /// let t = std::thread::spawn(move || listener.accept::<String>().unwrap().recv().unwrap());
    /// Client::connect::<String>(&address, Some(b"key"))?.send("hi".into())?;
    /// assert_eq!(t.join().unwrap(), "hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect<T>(address: &Address, authkey: Option<&[u8]>) -> Result<Connection<T>, ConnectionError> {
        let sock = address::connect(address, HANDSHAKE_TIMEOUT).map_err(|source| ConnectionError::Io {
            what: "cannot connect to",
            address: address.clone(),
            source,
        })?;
        let mut ch = Channel::new(sock, AUTH_MAX_FRAME);
        if let Some(key) = authkey {
            let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
            auth::answer(&mut ch, &LISTENER, key, deadline).map_err(|e| handshake_error(e, address))?;
        }
        Ok(Connection::from_channel(ch, true, true))
    }
}
