//! The manager's server: a listener, one thread per client connection, and the objects.
//!
//! Its files, lowest first:
//!
//! - `objects`: the objects, one file per kind, each with its operations.
//! - `table`: the registry's table of objects with their reference counts, per client
//!   process (a *session*, shared by all its connections).
//! - `state`: the server's shared state (`Server`) and one connection's own.
//! - `registry`: the registry requests, and the release of everything a process held
//!   when it ends — cleanly or killed — including locks it had acquired.
//! - `connection`: the handshake and the request loop of one connection.
//!
//! Operations on an object take only that object's lock: each connection keeps its own
//! cache of the objects it uses, so the registry's lock is taken for reference changes,
//! not for operations.

mod connection;
mod objects;
mod registry;
mod state;
mod table;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use objects::Done;
use objects::Peer;
use registry::ContainerRefs;
pub(crate) use state::Server;
use state::{Connection, Served};

use super::protocol::{KIND_SERVER_FAILED, KIND_SERVER_SHUTDOWN, KIND_SERVER_STARTED, RemoteError, Request};
use crate::address::{Address, Listener};
use crate::spawn::ChildContext;

/// What a server is told when it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServerConfig {
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
    pub(crate) max_request: u32,
}

/// What a started server reports to the process that started it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Started {
    pub(crate) address: Address,
}

impl Server {
    /// Serves one decoded request, writing its reply payload to `out`.
    pub(crate) fn serve(
        &self,
        conn: &mut Connection,
        req: &Request<'_>,
        peer: &Peer<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Served, RemoteError> {
        match req {
            Request::Registry(op) => self.serve_registry(conn.session, op, peer, out),
            Request::Object(id, op) => {
                let obj = self.object(conn, *id)?;
                let peer = Peer { session: conn.session, same_build: conn.same_build, fd: peer.fd };
                let held = ContainerRefs::new(self, *id, conn.session);
                match obj.handle(*id, op, &peer, &held, out)? {
                    Done::Reply => Ok(Served::Reply),
                    Done::ReplyOrRequeue => Ok(Served::ReplyOrRequeue(obj, *id)),
                }
            }
        }
    }
}

/// Accepts connections forever, one thread each.
pub(crate) fn accept_loop(server: Arc<Server>, listener: Listener) -> std::io::Error {
    loop {
        match listener.accept() {
            Ok(sock) => {
                let s = server.clone();
                // A thread that cannot start drops its connection; the server goes on.
                let _ = std::thread::Builder::new().name("multiproc-manager-conn".into()).spawn(move || {
                    s.serve_connection(sock);
                });
            }
            Err(e) if is_transient(&e) => {
                // Out of descriptors or similar: back off a little rather than spin.
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return e,
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), Interrupted | ConnectionAborted | ConnectionReset | WouldBlock | OutOfMemory)
        || matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EPROTO))
}

/// The entry of a started server process.
pub(crate) fn server_entry(ctx: ChildContext) {
    // Ctrl-C in a terminal reaches every process of its foreground group: the program
    // decides what it means, and its server must outlive a program that handles it (a
    // program that dies of it takes the server along). Python's server ignores it too.
    crate::sys::proc::ignore_interrupt();
    let ChildContext { mut channel, payload, .. } = ctx;
    let config: ServerConfig = match crate::wire::codec::decode(&payload) {
        Ok(c) => c,
        Err(e) => {
            let _ = channel.send(KIND_SERVER_FAILED, &format!("unreadable configuration: {e}"));
            return;
        }
    };
    let (listener, address) = match Listener::bind(&config.address) {
        Ok(l) => l,
        Err(e) => {
            let _ = channel.send(KIND_SERVER_FAILED, &e.to_string());
            return;
        }
    };
    if channel.send(KIND_SERVER_STARTED, &Started { address }).is_err() {
        return;
    }
    // The channel to the parent is the server's lifeline: a shutdown request or its end
    // (the parent died, or dropped its `Manager`) stops the server.
    let _ = std::thread::Builder::new().name("multiproc-manager-lifeline".into()).spawn(move || {
        loop {
            match channel.recv(None) {
                Ok(f) if f.kind == KIND_SERVER_SHUTDOWN => break,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        crate::sys::proc::exit_now(0);
    });
    let server = Server::new(config.authkey, config.max_request);
    let e = accept_loop(server, listener);
    eprintln!("multiproc manager: cannot accept connections: {e}");
    crate::sys::proc::exit_now(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::protocol::{KIND_ERR, KIND_OK, Kind, RegistryOp, Writer, all_codes, decode_request};
    use crate::spawn::identity::SameBuild;
    use proptest::prelude::*;

    /// Every operation code by name.
    mod op {
        pub(super) use crate::manager::protocol::{
            custom::*, dict::*, namespace::*, queue::*, registry::*, seq::*, sync::*, value::*,
        };
    }

    fn server_and_conn() -> (Arc<Server>, Connection) {
        let s = Server::new(b"k".to_vec(), 1 << 20);
        let c = s.join(None, SameBuild::check(crate::spawn::identity::fingerprint())).unwrap();
        (s, c)
    }

    fn run(s: &Server, c: &mut Connection, kind: u8, payload: &[u8]) -> Result<Vec<u8>, RemoteError> {
        let req = decode_request(kind, payload)?;
        let peer = Peer { session: c.session, same_build: c.same_build, fd: None };
        let mut out = Vec::new();
        s.serve(c, &req, &peer, &mut out).map(|_| out)
    }

    fn create(s: &Server, c: &mut Connection, kind: Kind) -> u64 {
        let mut p = Vec::new();
        let w = &mut Writer(&mut p);
        w.u8(kind as u8).str("t");
        match kind {
            Kind::List | Kind::Array => drop(w.u32(1).bytes(&[5])),
            Kind::Queue | Kind::JoinableQueue => drop(w.u64(2)),
            Kind::Value => drop(w.bytes(&[5])),
            Kind::Semaphore => drop(w.u64(1).u8(1)),
            Kind::Barrier => drop(w.u64(1)),
            _ => {}
        }
        let out = run(s, c, op::CREATE, &p).unwrap();
        crate::wire::codec::decode::<u64>(&out).unwrap()
    }

    #[test]
    fn a_session_that_ends_releases_its_objects_and_locks() {
        let (s, mut c) = server_and_conn();
        let lock = create(&s, &mut c, Kind::Lock);
        let mut p = Vec::new();
        Writer(&mut p).u64(lock).u64(1).u64(0);
        assert_eq!(run(&s, &mut c, op::L_ACQUIRE, &p).unwrap(), [1]);
        let mut other = s.join(None, SameBuild::check(crate::spawn::identity::fingerprint())).unwrap();
        let mut inc = Vec::new();
        Writer(&mut inc).u64(lock).u8(Kind::Lock as u8).str("t");
        run(&s, &mut other, op::INCREF, &inc).unwrap();
        s.leave(c);
        assert_eq!(s.registry().objects.len(), 1);
        assert_eq!(run(&s, &mut other, op::L_ACQUIRE, &p).unwrap(), [1], "released with its session");
        s.leave(other);
        assert!(s.registry().objects.is_empty());
    }

    const KINDS: [Kind; 13] = [
        Kind::Dict,
        Kind::List,
        Kind::Array,
        Kind::Queue,
        Kind::JoinableQueue,
        Kind::Value,
        Kind::Namespace,
        Kind::Lock,
        Kind::RLock,
        Kind::Semaphore,
        Kind::Event,
        Kind::Condition,
        Kind::Barrier,
    ];

    /// Every operation code and one unknown one, to aim random payloads at real parsers.
    static OPS: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| all_codes().chain([0xEE]).collect());

    /// A random but well-formed request on one of `ids`; waits are zero, function
    /// offsets are refused (the connection is marked as another build).
    fn request() -> impl Strategy<Value = (u8, Vec<u8>)> {
        (0usize..OPS.len(), 0u64..6, any::<u64>(), prop::collection::vec(any::<u8>(), 0..6), any::<u8>()).prop_map(
            |(o, id, n, bytes, b)| {
                let op = OPS[o];
                let mut p = Vec::new();
                let w = &mut Writer(&mut p);
                match op {
                    op::CREATE => {
                        let kind = KINDS[b as usize % KINDS.len()];
                        w.u8(kind as u8).str("t");
                        match kind {
                            Kind::List | Kind::Array => drop(w.u32(1).bytes(&bytes)),
                            Kind::Queue | Kind::JoinableQueue => drop(w.u64(n % 3)),
                            Kind::Value => drop(w.bytes(&bytes)),
                            Kind::Semaphore => drop(w.u64(n % 3).u8(b % 2)),
                            Kind::Barrier => drop(w.u64(n % 3)),
                            _ => {}
                        }
                    }
                    op::COUNT | op::PING => {}
                    op::WAIT_COUNT => drop(w.u64(n).u64(0)),
                    op::INCREF => drop(w.u64(id).u8(b % 15).str("t")),
                    op::LOOKUP => drop(w.str("name").u8(b % 15).str("t")),
                    op::ADOPT => drop(w.u64(id).u64(n % 4).u8(b % 15).str("t")),
                    op::PUBLISH => drop(w.str("name").u64(id)),
                    op::UNPUBLISH => drop(w.str("name")),
                    op::D_GET | op::D_REMOVE | op::D_CONTAINS => drop(w.u64(id).bytes(&bytes)),
                    op::D_INSERT | op::D_SET => drop(w.u64(id).bytes(&bytes).bytes(&[b])),
                    op::D_UPDATE => drop(w.u64(id).u32(1).bytes(&bytes).bytes(&[b])),
                    op::D_GET_MANY | op::S_EXTEND => drop(w.u64(id).u32(1).bytes(&bytes)),
                    op::D_MODIFY => drop(w.u64(id).bytes(&bytes).i64(1).i64(2)),
                    op::D_KEYS_FROM => drop(w.u64(id).u64(n).u64(n % 4).u32(3)),
                    op::S_PUSH | op::V_SET => drop(w.u64(id).bytes(&bytes)),
                    op::S_GET | op::S_REMOVE => drop(w.u64(id).u64(n % 4)),
                    op::S_SET | op::S_INSERT => drop(w.u64(id).u64(n % 4).bytes(&bytes)),
                    op::S_MODIFY => drop(w.u64(id).u64(n % 4).i64(1).i64(2)),
                    op::V_MODIFY => drop(w.u64(id).i64(1).i64(2)),
                    op::N_GET | op::N_REMOVE => drop(w.u64(id).str("a")),
                    op::N_SET => drop(w.u64(id).str("a").str("t").bytes(&bytes)),
                    op::Q_PUT => drop(w.u64(id).u64(0).bytes(&bytes)),
                    op::Q_GET | op::Q_JOIN | op::E_WAIT | op::B_WAIT => drop(w.u64(id).u64(0)),
                    op::Q_READY => drop(w.u64(id).u64(0).u8(b % 2)),
                    op::L_ACQUIRE | op::C_WAIT => drop(w.u64(id).u64(n % 2).u64(0)),
                    op::L_RELEASE => drop(w.u64(id).u64(n % 2)),
                    op::C_NOTIFY => drop(w.u64(id).u64(n % 2).u64(n)),
                    op::CALL => drop(w.u64(id).i64(1).i64(2).bytes(&bytes)),
                    _ => drop(w.u64(id)),
                }
                (op, p)
            },
        )
    }

    proptest! {
        #[test]
        fn the_decoder_survives_any_bytes(kind in any::<u8>(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_request(kind, &payload);
        }

        #[test]
        fn every_well_formed_request_decodes((code, payload) in request()) {
            // The strategy's only deliberate fault is an object kind byte of 0.
            let decoded = decode_request(code, &payload);
            let bad_kind = matches!(&decoded, Err(RemoteError::BadRequest(m)) if m.contains("unknown object kind"));
            prop_assert!(decoded.is_ok() == (code != 0xEE) || bad_kind, "{:#04x}: {:?}", code, decoded);
        }

        #[test]
        fn the_decoder_survives_real_operations_with_random_payloads(
            o in 0usize..OPS.len(),
            payload in prop::collection::vec(any::<u8>(), 0..48),
        ) {
            if let Ok(req) = decode_request(OPS[o], &payload) {
                // Whatever parsed must have consumed the payload exactly.
                prop_assert!(!matches!(req, Request::Registry(RegistryOp::Ping)) || payload.is_empty());
            }
        }

        #[test]
        fn random_request_sequences_never_break_the_server(reqs in prop::collection::vec(request(), 1..40)) {
            let s = Server::new(b"k".to_vec(), 1 << 20);
            let mut a = s.join(None, None).unwrap();
            let mut b = s.join(None, None).unwrap();
            for (i, (kind, payload)) in reqs.iter().enumerate() {
                let c = if i % 3 == 0 { &mut b } else { &mut a };
                let r = run(&s, c, *kind, payload);
                prop_assert!(!matches!(r, Err(RemoteError::PeerGone)));
                if matches!(kind, &op::D_MODIFY | &op::S_MODIFY | &op::V_MODIFY | &op::CALL) {
                    prop_assert!(r.is_err(), "a function from another build ran");
                }
            }
            // Everything is released when the sessions end.
            s.leave(a);
            s.leave(b);
            let reg = s.registry();
            let published = reg.names.len();
            prop_assert!(reg.objects.len() <= published);
            prop_assert!(reg.sessions.is_empty() && reg.transit.is_empty());
        }
    }

    #[test]
    fn a_slot_serves_reads_refuses_the_rest_and_ends_with_its_connection() {
        use crate::manager::slot::{ClientSlot, SlotReply};
        let (s, mut c) = server_and_conn();
        let dict = create(&s, &mut c, Kind::Dict);
        let slot = ClientSlot::create().unwrap();
        let served = s.open_slot(&c, &[slot.fd().try_clone().unwrap()]).unwrap();
        let (mut out, mut alive) = (Vec::new(), || false);
        let mut len = Vec::new();
        Writer(&mut len).u64(dict);
        assert!(matches!(slot.call(op::D_LEN, &len, &mut out, &mut alive), SlotReply::Done(KIND_OK)));
        assert_eq!(crate::wire::codec::decode::<u64>(&out).unwrap(), 0);
        let mut set = Vec::new();
        Writer(&mut set).u64(dict).bytes(&[1]).bytes(&[2]);
        assert!(matches!(slot.call(op::D_SET, &set, &mut out, &mut alive), SlotReply::Done(KIND_ERR)));
        assert!(matches!(slot.call(op::D_GET, &[0xff; 3], &mut out, &mut alive), SlotReply::Done(KIND_ERR)));
        assert!(matches!(slot.call(0xEE, &[], &mut out, &mut alive), SlotReply::Done(KIND_ERR)));
        assert!(matches!(slot.call(op::D_LEN, &len, &mut out, &mut alive), SlotReply::Done(KIND_OK)));
        // The connection ends: the slot's thread leaves the session, which frees the dict.
        served.close();
        s.leave(c);
        let mut reg = s.registry();
        while !reg.objects.is_empty() {
            reg = s.freed.wait(reg).unwrap();
        }
        assert!(reg.sessions.is_empty());
    }

    /// The bytes of a proxy of `obj` sent with `token`, as containers find them.
    fn proxy_bytes(s: &Server, token: u64, obj: u64) -> Vec<u8> {
        let mut v = b"address and key".to_vec();
        v.extend_from_slice(&s.instance);
        crate::wire::codec::encode_into(&(token, obj, "types"), &mut v).unwrap();
        v
    }

    #[test]
    fn a_container_holds_a_stored_proxy_until_it_is_dropped_or_freed() {
        let (s, mut c) = server_and_conn();
        let (inner, dict) = (create(&s, &mut c, Kind::List), create(&s, &mut c, Kind::Dict));
        let token = crate::wire::codec::decode::<u64>(&run(&s, &mut c, op::TRANSIT, &inner.to_le_bytes()).unwrap());
        let mut set = Vec::new();
        Writer(&mut set).u64(dict).bytes(b"k").bytes(&proxy_bytes(&s, token.unwrap(), inner));
        run(&s, &mut c, op::D_SET, &set).unwrap();
        run(&s, &mut c, op::DECREF, &inner.to_le_bytes()).unwrap();
        assert!(s.registry().transit.is_empty(), "the transit reference became the dict's");
        assert_eq!(s.registry().objects.len(), 2, "the dict keeps the list");
        run(&s, &mut c, op::D_SET, &set).unwrap();
        assert_eq!(s.registry().objects.len(), 2, "stored again, then the first copy dropped");
        let mut clear = Vec::new();
        Writer(&mut clear).u64(dict);
        run(&s, &mut c, op::D_CLEAR, &clear).unwrap();
        assert_eq!(s.registry().objects.len(), 1, "cleared: the list is freed");
        assert!(s.registry().holds.is_empty());
    }

    #[test]
    fn known_kinds_create() {
        let (s, mut c) = server_and_conn();
        for k in KINDS {
            create(&s, &mut c, k);
        }
        assert_eq!(s.registry().objects.len(), KINDS.len());
    }
}
