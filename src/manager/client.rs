//! A process's side of a manager: authenticated connections, one request at a time each.
//!
//! A process has one [`Client`] per server (shared by every proxy it holds) with a small
//! pool of connections: a call takes an idle connection (or opens one), sends its
//! request, reads the reply on the calling thread and puts the connection back. So a
//! call is one round trip with no thread hop, and a thread blocked in `queue.get()` does
//! not stop another thread's calls. All the connections of a process form one session
//! on the server, which counts the process's references.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::address::{self, Address};
use super::auth::{self, AuthError};
use super::error::ManagerError;
use super::protocol::{
    KIND_ERR, KIND_OK, KIND_SESSION_HELLO, KIND_SESSION_READY, MANAGER_PROTOCOL, RemoteError, SessionHello,
    SessionReady, Writer,
};
use crate::wire::codec;
use crate::wire::frame::{Channel, HEADER_LEN};
use crate::wire::{CodecError, FrameError};

/// How long connecting and authenticating may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A process's connections to one server.
pub(crate) struct Client {
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
    session: [u8; 16],
    max_request: u32,
    server_pid: u32,
    idle: Mutex<Vec<Channel>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("address", &self.address).field("server_pid", &self.server_pid).finish()
    }
}

type Registry = Mutex<HashMap<(Address, Vec<u8>), Weak<Client>>>;

fn clients() -> &'static Registry {
    static CLIENTS: OnceLock<Registry> = OnceLock::new();
    CLIENTS.get_or_init(Registry::default)
}

/// Opens and authenticates one connection, joining `session` or starting one.
fn open(
    address: &Address,
    authkey: &[u8],
    session: Option<[u8; 16]>,
) -> Result<(Channel, [u8; 16], u32, u32), ManagerError> {
    let sock: OwnedFd = address::connect(address, CONNECT_TIMEOUT)
        .map_err(|source| ManagerError::Connect { address: address.clone(), source })?;
    let mut ch = Channel::new(sock, auth::AUTH_MAX_FRAME);
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let lost = |source| ManagerError::Disconnected { address: address.clone(), source };
    auth::answer(&mut ch, authkey, deadline).map_err(|e| match e {
        AuthError::Refused => ManagerError::AuthenticationFailed { address: address.clone() },
        AuthError::ServerUnproven => ManagerError::ServerNotAuthenticated { address: address.clone() },
        AuthError::Protocol(reason) => ManagerError::Handshake { address: address.clone(), reason },
        AuthError::Frame(e) => lost(e),
    })?;
    let hello = SessionHello {
        protocol: MANAGER_PROTOCOL,
        fingerprint: crate::spawn::identity::fingerprint(),
        session,
        pid: std::process::id(),
    };
    ch.writer.queue(KIND_SESSION_HELLO, &hello).map_err(lost)?;
    ch.writer.flush(Some(deadline)).map_err(lost)?;
    let frame = ch.recv(Some(deadline)).map_err(lost)?;
    if frame.kind != KIND_SESSION_READY {
        return Err(ManagerError::Handshake {
            address: address.clone(),
            reason: format!("expected the session reply, got frame kind {:#04x}", frame.kind),
        });
    }
    let ready: SessionReady =
        frame.decode().map_err(|e| ManagerError::Handshake { address: address.clone(), reason: e.to_string() })?;
    match ready {
        SessionReady::Ready { session, max_request, server_pid } => {
            ch.set_max_frame(max_request);
            Ok((ch, session, max_request, server_pid))
        }
        SessionReady::Refused(reason) => Err(ManagerError::Handshake { address: address.clone(), reason }),
    }
}

impl Client {
    /// This process's client of the server at `address`, connecting if there is none.
    pub(crate) fn shared(address: &Address, authkey: &[u8]) -> Result<Arc<Client>, ManagerError> {
        let key = (address.clone(), authkey.to_vec());
        let mut reg = clients().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = reg.get(&key).and_then(Weak::upgrade) {
            return Ok(c);
        }
        reg.retain(|_, w| w.strong_count() > 0);
        let (ch, session, max_request, server_pid) = open(address, authkey, None)?;
        let client = Arc::new(Client {
            address: address.clone(),
            authkey: authkey.to_vec(),
            session,
            max_request,
            server_pid,
            idle: Mutex::new(vec![ch]),
        });
        reg.insert(key, Arc::downgrade(&client));
        Ok(client)
    }

    pub(crate) fn server_pid(&self) -> u32 {
        self.server_pid
    }

    fn take(&self) -> Result<Channel, ManagerError> {
        if let Some(ch) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(ch);
        }
        Ok(open(&self.address, &self.authkey, Some(self.session))?.0)
    }

    fn put_back(&self, ch: Channel) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(ch);
    }

    fn lost(&self, source: FrameError) -> ManagerError {
        ManagerError::Disconnected { address: self.address.clone(), source }
    }

    /// Queues the request frame `op` whose payload `write` builds.
    fn queue(
        &self,
        ch: &mut Channel,
        op: u8,
        write: impl FnOnce(&mut Writer<'_>) -> Result<(), CodecError>,
    ) -> Result<(), ManagerError> {
        let mut codec_error = None;
        let r = ch.writer.queue_with(op, |buf| {
            write(&mut Writer(buf)).map_err(|e| {
                codec_error = Some(e.clone());
                e
            })
        });
        match r {
            Ok(()) => Ok(()),
            Err(_) if codec_error.is_some() => Err(ManagerError::Codec(codec_error.expect("checked"))),
            Err(FrameError::Oversized { len, max }) => Err(ManagerError::TooLarge { len, max }),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// One request and its reply: `write` builds the payload, `read` decodes an OK reply.
    pub(crate) fn call<R>(
        &self,
        op: u8,
        write: impl FnOnce(&mut Writer<'_>) -> Result<(), CodecError>,
        read: impl FnOnce(&[u8]) -> Result<R, CodecError>,
    ) -> Result<R, ManagerError> {
        let mut ch = self.take()?;
        self.queue(&mut ch, op, write).inspect_err(|_| debug_assert!(ch.writer.pending() == 0))?;
        if let Err(e) = ch.writer.flush(None) {
            return Err(self.lost(e));
        }
        let result = match ch.recv(None) {
            Ok(frame) if frame.kind == KIND_OK => read(frame.payload).map_err(ManagerError::Codec),
            Ok(frame) if frame.kind == KIND_ERR => match codec::decode::<RemoteError>(frame.payload) {
                Ok(e) => Err(ManagerError::from_remote(e)),
                Err(e) => Err(self.lost(FrameError::Malformed(format!("unreadable error reply: {e}")))),
            },
            Ok(frame) => Err(self.lost(FrameError::Malformed(format!("unexpected reply kind {:#04x}", frame.kind)))),
            Err(e) => return Err(self.lost(e)),
        };
        if !matches!(result, Err(ManagerError::Disconnected { .. })) {
            self.put_back(ch);
        }
        result
    }

    /// A request the server does not answer (dropping a reference).
    pub(crate) fn send_one_way(
        &self,
        op: u8,
        write: impl FnOnce(&mut Writer<'_>) -> Result<(), CodecError>,
    ) -> Result<(), ManagerError> {
        let mut ch = self.take()?;
        self.queue(&mut ch, op, write)?;
        ch.writer.flush(None).map_err(|e| self.lost(e))?;
        self.put_back(ch);
        Ok(())
    }

    /// The largest request payload the server accepts.
    #[allow(dead_code)]
    pub(crate) fn max_request(&self) -> usize {
        self.max_request as usize - HEADER_LEN.min(self.max_request as usize)
    }
}

/// Decodes a reply that carries nothing.
pub(crate) fn unit(p: &[u8]) -> Result<(), CodecError> {
    if p.is_empty() {
        Ok(())
    } else {
        Err(CodecError { op: "decode", type_name: "()", message: format!("{} unexpected bytes", p.len()) })
    }
}

/// Decodes a whole reply as a `T`.
pub(crate) fn value<T: serde::de::DeserializeOwned>(p: &[u8]) -> Result<T, CodecError> {
    codec::decode(p)
}
