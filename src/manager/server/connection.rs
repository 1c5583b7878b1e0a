//! One client connection: the handshake, then requests read, served and answered in
//! order until it closes; and the shared-memory slot a connection may open, served by a
//! thread of its own.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::objects::{Object, Peer};
use super::registry::ContainerRefs;
use super::state::{Connection, Served, Server};
use crate::manager::auth;
use crate::manager::protocol::{
    KIND_ERR, KIND_OK, KIND_POSTED_ERR, KIND_SESSION_HELLO, KIND_SESSION_READY, KIND_SLOT_OPEN, MANAGER_PROTOCOL,
    RemoteError, SessionHello, SessionReady, Travel, decode_request, travel,
};
use crate::manager::slot::{self, ServerSlot};
use crate::spawn::identity::SameBuild;
use crate::wire::FrameError;
use crate::wire::frame::{Channel, Frame, FrameWriter};

/// How long a new connection has to authenticate and say hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection polls for the next request before sleeping in the kernel: a
/// client in a loop sends it within microseconds of its reply, and a sleeping thread
/// takes about as long again to wake.
const REQUEST_SPIN: Duration = Duration::from_micros(50);

/// What became of one request frame.
struct Outcome {
    result: Result<Served, RemoteError>,
    /// Its success is not answered (see `Travel::Posted`).
    posted: bool,
}

impl Server {
    /// Handles one connection until it closes.
    pub(crate) fn serve_connection(self: Arc<Self>, sock: OwnedFd) {
        let Ok(poll_fd) = sock.try_clone() else { return };
        let mut ch = Channel::new(sock, auth::AUTH_MAX_FRAME);
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let Some(mut conn) = self.handshake(&mut ch, deadline) else { return };
        let ready = SessionReady::Ready {
            session: conn.session,
            max_request: self.max_request,
            server_pid: std::process::id(),
            server: self.instance,
        };
        if ch.writer.queue(KIND_SESSION_READY, &ready).is_ok() && ch.writer.flush(Some(deadline)).is_ok() {
            ch.set_max_frame(self.max_request);
            let mut slots = Vec::new();
            self.serve_frames(&mut conn, ch, &poll_fd, &mut slots);
            for slot in slots {
                slot.close();
            }
        }
        self.leave(conn);
    }

    /// Authenticates the client and reads its hello; `None` (having told the client why,
    /// when it got that far) if it does not join a session.
    fn handshake(&self, ch: &mut Channel, deadline: Instant) -> Option<Connection> {
        auth::serve(ch, &self.authkey, deadline).ok()?;
        let hello: SessionHello = match ch.recv(Some(deadline)) {
            Ok(f) if f.kind == KIND_SESSION_HELLO => f.decode().ok()?,
            _ => return None,
        };
        let joined = if hello.protocol != MANAGER_PROTOCOL {
            Err(format!("the manager speaks protocol {MANAGER_PROTOCOL}, the client {}", hello.protocol))
        } else {
            self.join(hello.session, SameBuild::check(hello.fingerprint))
        };
        match joined {
            Ok(conn) => Some(conn),
            Err(why) => {
                let _ = ch.writer.queue(KIND_SESSION_READY, &SessionReady::Refused(why));
                let _ = ch.writer.flush(Some(deadline));
                None
            }
        }
    }

    /// Opens the shared-memory slot a client sent, with a thread of its own that serves
    /// it as another connection of the same session.
    pub(super) fn open_slot(
        self: &Arc<Self>,
        conn: &Connection,
        fds: &[OwnedFd],
    ) -> Result<Arc<ServerSlot>, RemoteError> {
        let [fd] = fds else {
            return Err(RemoteError::BadRequest(format!("a slot request carries one descriptor, not {}", fds.len())));
        };
        let slot = ServerSlot::open(fd).map_err(RemoteError::BadRequest)?;
        let mut slot_conn = self.join(Some(conn.session), conn.same_build).map_err(RemoteError::BadRequest)?;
        let (server, served) = (self.clone(), slot.clone());
        let spawned = std::thread::Builder::new().name("multiproc-manager-slot".into()).spawn(move || {
            server.serve_slot(&mut slot_conn, &served);
            server.leave(slot_conn);
        });
        match spawned {
            Ok(_) => Ok(slot),
            Err(e) => Err(RemoteError::BadRequest(format!("cannot start the slot's thread: {e}"))),
        }
    }

    /// Serves a slot's requests (read-only ones only) until its connection ends.
    fn serve_slot(&self, conn: &mut Connection, slot: &ServerSlot) {
        let peer = Peer { session: conn.session, same_build: conn.same_build, fd: None };
        let (mut req, mut out) = (Vec::new(), Vec::new());
        while let Some(code) = slot.next(&mut req) {
            out.clear();
            let result = if slot::eligible(code) {
                decode_request(code, &req).and_then(|r| self.serve(conn, &r, &peer, &mut out))
            } else {
                Err(RemoteError::BadRequest(format!("request {code:#04x} cannot go through a slot")))
            };
            match result {
                Ok(_) => slot.reply(KIND_OK, &out),
                Err(e) => {
                    out.clear();
                    match crate::wire::codec::encode_into(&e, &mut out) {
                        Ok(()) => slot.reply(KIND_ERR, &out),
                        Err(_) => slot.reply(KIND_ERR, &[]),
                    }
                }
            }
        }
    }

    /// The request loop: read a frame, serve it, answer it (flushing when no other
    /// request is already buffered), until the connection ends.
    fn serve_frames(
        self: &Arc<Self>,
        conn: &mut Connection,
        ch: Channel,
        poll_fd: &OwnedFd,
        slots: &mut Vec<Arc<ServerSlot>>,
    ) {
        let (mut reader, mut writer) = ch.split();
        let peer = Peer { session: conn.session, same_build: conn.same_build, fd: Some(poll_fd.as_fd()) };
        let mut out = Vec::new();
        loop {
            reader.spin_fill(REQUEST_SPIN, None);
            let frame = match reader.recv(None) {
                Ok(f) => f,
                Err(FrameError::Oversized { len, max }) => return refuse_oversized(&mut writer, len, max),
                Err(_) => return,
            };
            out.clear();
            let outcome = self.serve_frame(conn, frame, &peer, slots, &mut out);
            let Ok(requeue) = answer(&mut writer, outcome, &out) else { return };
            if (requeue.is_some() || !reader.has_frame()) && writer.flush(None).is_err() {
                if let Some((obj, id)) = requeue {
                    obj.requeue(std::mem::take(&mut out), &ContainerRefs::new(self, id, conn.session));
                }
                return;
            }
        }
    }

    /// Serves one request frame, writing its reply payload to `out`.
    fn serve_frame(
        self: &Arc<Self>,
        conn: &mut Connection,
        frame: Frame<'_>,
        peer: &Peer<'_>,
        slots: &mut Vec<Arc<ServerSlot>>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let posted = travel(frame.kind) == Travel::Posted;
        let result = if frame.kind == KIND_SLOT_OPEN && !slots.is_empty() {
            Err(RemoteError::BadRequest("this connection already has a slot".into()))
        } else if frame.kind == KIND_SLOT_OPEN {
            self.open_slot(conn, &frame.fds).map(|slot| {
                slots.push(slot);
                Served::Reply
            })
        } else if !frame.fds.is_empty() {
            Err(RemoteError::BadRequest("values holding file descriptors cannot be stored in a manager".into()))
        } else {
            decode_request(frame.kind, frame.payload).and_then(|req| self.serve(conn, &req, peer, out))
        };
        match result {
            Ok(_) if posted => Outcome { result: Ok(Served::Silent), posted },
            result => Outcome { result, posted },
        }
    }
}

/// A request over the size limit: the rest of its frame is still in the socket, so
/// answer, then hang up.
fn refuse_oversized(writer: &mut FrameWriter, len: u64, max: u32) {
    let e = RemoteError::BadRequest(format!("request of {len} bytes exceeds the limit of {max}"));
    let _ = writer.queue(KIND_ERR, &e);
    let _ = writer.flush(Some(Instant::now() + Duration::from_secs(1)));
}

/// The client hung up while its request was served.
struct Gone;

/// Queues the answer to a served request. Returns the queue to put the reply's item back
/// in if the reply cannot be delivered, if any.
fn answer(writer: &mut FrameWriter, outcome: Outcome, out: &[u8]) -> Result<Option<(Arc<Object>, u64)>, Gone> {
    match outcome.result {
        Ok(Served::Silent) => Ok(None),
        Ok(Served::Reply) => {
            queue_reply(writer, out);
            Ok(None)
        }
        Ok(Served::ReplyOrRequeue(obj, id)) => {
            queue_reply(writer, out);
            Ok(Some((obj, id)))
        }
        Err(RemoteError::PeerGone) => Err(Gone),
        Err(e) => {
            let _ = writer.queue(if outcome.posted { KIND_POSTED_ERR } else { KIND_ERR }, &e);
            Ok(None)
        }
    }
}

fn queue_reply(writer: &mut FrameWriter, out: &[u8]) {
    if let Err(e) = writer.queue_bytes(KIND_OK, out) {
        let _ = writer.queue(KIND_ERR, &RemoteError::BadRequest(format!("the reply cannot be sent: {e}")));
    }
}
