//! Where a manager or a `connection::Listener` listens: a TCP address, a Unix socket in
//! the abstract namespace (a name with no file behind it, gone when the server closes
//! it), or a Unix socket file (removed when its listener is dropped).

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The address of a manager's server or a [`connection::Listener`](crate::connection::Listener).
///
/// Written `127.0.0.1:50000` (TCP), `@name` (a Unix socket in the abstract namespace,
/// which is what [`Manager::start`](crate::Manager::start) uses, with a random name), or a
/// path with a `/` in it (a Unix socket file, Python's default `AF_UNIX` address).
///
/// ```
/// use multiproc::manager::Address;
///
/// let tcp: Address = "127.0.0.1:50000".parse().unwrap();
/// assert_eq!(tcp.to_string(), "127.0.0.1:50000");
/// let local: Address = "@my-manager".parse().unwrap();
/// assert!(matches!(local, Address::Local(ref name) if name == "my-manager"));
/// let file: Address = "./listener.sock".parse().unwrap();
/// assert!(matches!(file, Address::Path(ref p) if p.ends_with("listener.sock")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Address {
    /// A TCP address: for servers other machines reach.
    Tcp(SocketAddr),
    /// A Unix socket in the abstract namespace of this machine (the name, without `@`).
    Local(String),
    /// A Unix socket file; the listener that made it removes it when dropped.
    Path(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Local(name) => write!(f, "@{name}"),
            Address::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

impl FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Address, String> {
        if let Some(name) = s.strip_prefix('@') {
            if name.is_empty() || name.len() > 100 {
                return Err(format!("`{s}`: an abstract socket name has 1 to 100 bytes"));
            }
            return Ok(Address::Local(name.to_string()));
        }
        if s.contains('/') {
            return Ok(Address::Path(PathBuf::from(s)));
        }
        s.parse::<SocketAddr>().map(Address::Tcp).map_err(|_| {
            format!("`{s}` is neither `host:port` (an IP address and a port), `@name` nor a path with a `/`")
        })
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Tcp(a)
    }
}

/// A bound, listening socket.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Local(UnixListener),
    /// A socket file, removed on drop.
    Path(UnixListener, PathBuf),
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Path(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Listener {
    pub(crate) fn bind(address: &Address) -> io::Result<(Listener, Address)> {
        match address {
            Address::Tcp(a) => {
                let l = TcpListener::bind(a)?;
                let bound = l.local_addr()?;
                Ok((Listener::Tcp(l), Address::Tcp(bound)))
            }
            Address::Local(name) => {
                let l = UnixListener::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes())?)?;
                Ok((Listener::Local(l), address.clone()))
            }
            Address::Path(path) => Ok((Listener::Path(UnixListener::bind(path)?, path.clone()), address.clone())),
        }
    }

    /// Waits for the next connection.
    pub(crate) fn accept(&self) -> io::Result<OwnedFd> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(s.into())
            }
            Listener::Local(l) | Listener::Path(l, _) => Ok(l.accept()?.0.into()),
        }
    }
}

/// Connects to a server, giving up after `timeout`.
pub(crate) fn connect(address: &Address, timeout: Duration) -> io::Result<OwnedFd> {
    match address {
        Address::Tcp(a) => {
            let s = TcpStream::connect_timeout(a, timeout)?;
            s.set_nodelay(true)?;
            Ok(s.into())
        }
        Address::Local(name) => Ok(UnixStream::connect_addr(&UnixAddr::from_abstract_name(name.as_bytes())?)?.into()),
        Address::Path(path) => Ok(UnixStream::connect(path)?.into()),
    }
}

/// A fresh abstract-namespace address nobody else will guess.
pub(crate) fn random_local() -> io::Result<Address> {
    let mut b = [0u8; 12];
    crate::auth::random_bytes(&mut b)?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(Address::Local(format!("multiproc-manager-{}-{hex}", std::process::id())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        assert_eq!("@x".parse::<Address>().unwrap(), Address::Local("x".into()));
        assert!("@".parse::<Address>().is_err());
        assert!("nonsense".parse::<Address>().unwrap_err().contains("nonsense"));
        let a: Address = "[::1]:80".parse().unwrap();
        assert_eq!(a.to_string(), "[::1]:80");
    }

    #[test]
    fn a_local_listener_accepts_a_connection() {
        let addr = random_local().unwrap();
        let (l, bound) = Listener::bind(&addr).unwrap();
        assert_eq!(bound, addr);
        let c = connect(&addr, Duration::from_secs(5)).unwrap();
        let s = l.accept().unwrap();
        drop((c, s));
    }
}
