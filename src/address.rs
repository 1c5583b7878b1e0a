//! Where a manager listens: a TCP address, or a Unix socket in the abstract namespace
//! (a name with no file behind it, gone when the server closes it).

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The address of a manager's server.
///
/// Written `127.0.0.1:50000` (TCP) or `@name` (a Unix socket in the abstract namespace,
/// which is what [`Manager::start`](crate::Manager::start) uses, with a random name).
///
/// ```
/// use multiproc::manager::Address;
///
/// let tcp: Address = "127.0.0.1:50000".parse().unwrap();
/// assert_eq!(tcp.to_string(), "127.0.0.1:50000");
/// let local: Address = "@my-manager".parse().unwrap();
/// assert!(matches!(local, Address::Local(ref name) if name == "my-manager"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Address {
    /// A TCP address: for servers other machines reach.
    Tcp(SocketAddr),
    /// A Unix socket in the abstract namespace of this machine (the name, without `@`).
    Local(String),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Local(name) => write!(f, "@{name}"),
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
        s.parse::<SocketAddr>()
            .map(Address::Tcp)
            .map_err(|_| format!("`{s}` is neither `host:port` (an IP address and a port) nor `@name`"))
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
            Listener::Local(l) => Ok(l.accept()?.0.into()),
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
