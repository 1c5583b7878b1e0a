//! The registry's requests on its table (`table.rs`): every object with its reference
//! count, the sessions (client processes) that hold those references, references in
//! transit between processes, and names.
//!
//! A session's references are counted apart, so when its last connection closes —
//! cleanly or because the process was killed — everything it held is released. The
//! registry's lock is taken for reference changes only: operations on an object go
//! through the connection's cache (see [`Server::object`]).

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::objects::held::{self, Held};
use super::objects::{Object, Peer};
use super::state::{Connection, Served, Server};
use super::table::{Entry, Registry, Session};
use crate::manager::auth;
use crate::manager::protocol::{Init, Kind, RegistryOp, RemoteError, Wait};
use crate::spawn::identity::SameBuild;

impl Server {
    pub(super) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes `wait_object_count` waiters if objects were freed; drops them first, outside
    /// the registry's lock (an object's drop may run user code).
    pub(super) fn notify_freed(&self, freed: Vec<Arc<Object>>) {
        if !freed.is_empty() {
            drop(freed);
            self.freed.notify_all();
        }
    }

    /// Opens a connection's place in a session (a new one, or its process's).
    pub(crate) fn join(&self, session: Option<[u8; 16]>, same_build: Option<SameBuild>) -> Result<Connection, String> {
        let mut reg = self.registry();
        let id = match session {
            Some(id) => {
                let s = reg.sessions.get_mut(&id).ok_or("unknown session: its process's connections all closed")?;
                s.connections += 1;
                id
            }
            None => {
                let mut id = [0u8; 16];
                auth::random_bytes(&mut id).map_err(|e| e.to_string())?;
                reg.sessions.insert(id, Session { connections: 1, ..Session::default() });
                id
            }
        };
        self.connections.fetch_add(1, Ordering::Relaxed);
        Ok(Connection::new(id, same_build))
    }

    /// Closes a connection; the last one of a session releases all it held.
    pub(crate) fn leave(&self, conn: Connection) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
        let (held, freed) = {
            let mut reg = self.registry();
            let Some(s) = reg.sessions.get_mut(&conn.session) else { return };
            s.connections -= 1;
            if s.connections > 0 {
                return;
            }
            reg.end_session(conn.session)
        };
        for obj in &held {
            obj.release_session(conn.session);
        }
        drop(held);
        self.notify_freed(freed);
    }

    /// The object with this id, from the connection's cache when it is there.
    pub(super) fn object(&self, conn: &mut Connection, id: u64) -> Result<Arc<Object>, RemoteError> {
        if let Some(obj) = conn.cache.get(&id).and_then(Weak::upgrade) {
            return Ok(obj);
        }
        let obj = self.registry().objects.get(&id).map(|e| e.obj.clone()).ok_or(RemoteError::UnknownObject(id))?;
        conn.remember(id, &obj);
        Ok(obj)
    }

    /// Serves one registry request.
    pub(super) fn serve_registry(
        &self,
        session: [u8; 16],
        op: &RegistryOp<'_>,
        peer: &Peer<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Served, RemoteError> {
        use RegistryOp as R;
        let put_u64 = |out: &mut Vec<u8>, n: u64| crate::wire::codec::encode_into(&n, out).expect("u64 encodes");
        // A table: one step per operation.
        match *op {
            R::Create { kind, types, ref init } => put_u64(out, self.create(session, kind, types, init, peer)?),
            R::Incref { obj, kind, types } => {
                let mut reg = self.registry();
                reg.check(obj, kind, types)?;
                reg.incref(session, obj);
            }
            R::Decref { obj } => {
                self.decref(session, obj);
                return Ok(Served::Silent);
            }
            R::Transit { obj } => put_u64(out, self.transit(session, obj)?),
            R::Adopt { obj, token, kind, types } => self.adopt(session, obj, token, kind, types)?,
            R::Publish { name, obj } => self.publish(name, obj)?,
            R::Lookup { name, kind, types } => put_u64(out, self.lookup(session, name, kind, types)?),
            R::Unpublish { name } => self.unpublish(name)?,
            R::Count => put_u64(out, self.registry().objects.len() as u64),
            R::Ping => {}
            R::WaitCount { max, wait } => out.push(self.wait_count(max, wait) as u8),
        }
        Ok(Served::Reply)
    }

    fn create(
        &self,
        session: [u8; 16],
        kind: Kind,
        types: &str,
        init: &Init<'_>,
        peer: &Peer<'_>,
    ) -> Result<u64, RemoteError> {
        let obj = Arc::new(Object::new(kind, types, init.clone(), peer)?);
        let mut reg = self.registry();
        let id = reg.next_id;
        reg.next_id += 1;
        reg.objects.insert(id, Entry { obj, refs: 0 });
        reg.incref(session, id);
        let initial = match init {
            Init::Items(items) => items.as_slice(),
            Init::Value(v) => std::slice::from_ref(v),
            _ => &[],
        };
        if self.proxies_sent.load(Ordering::Relaxed) {
            for (token, obj) in initial.iter().flat_map(|v| held::proxies_in(v, &self.instance)) {
                reg.hold(id, token, obj);
            }
        }
        Ok(id)
    }

    /// Drops a reference `session` holds; only those can be dropped by it.
    fn decref(&self, session: [u8; 16], obj: u64) {
        let freed = {
            let mut reg = self.registry();
            let Some(s) = reg.sessions.get_mut(&session) else { return };
            match s.refs.get_mut(&obj) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => drop(s.refs.remove(&obj)),
                None => return,
            }
            reg.decref(obj)
        };
        self.notify_freed(freed);
    }

    /// Holds a reference for a proxy on its way to another process; returns its token.
    fn transit(&self, session: [u8; 16], obj: u64) -> Result<u64, RemoteError> {
        let mut reg = self.registry();
        let e = reg.objects.get_mut(&obj).ok_or(RemoteError::UnknownObject(obj))?;
        e.refs += 1;
        self.proxies_sent.store(true, Ordering::Relaxed);
        let token = reg.next_token;
        reg.next_token += 1;
        reg.transit.insert(token, (session, obj));
        reg.sessions.entry(session).or_default().transit.insert(token, obj);
        Ok(token)
    }

    /// Takes over the reference in transit under `token`, for `session`.
    fn adopt(&self, session: [u8; 16], obj: u64, token: u64, kind: Kind, types: &str) -> Result<(), RemoteError> {
        let mut reg = self.registry();
        reg.check(obj, kind, types)?;
        match reg.transit.get(&token) {
            Some(&(from, o)) if o == obj => {
                reg.transit.remove(&token);
                if let Some(s) = reg.sessions.get_mut(&from) {
                    s.transit.remove(&token);
                }
                *reg.sessions.entry(session).or_default().refs.entry(obj).or_default() += 1;
            }
            // Already adopted (the same bytes decoded twice): take a new reference.
            _ => reg.incref(session, obj),
        }
        Ok(())
    }

    fn publish(&self, name: &str, obj: u64) -> Result<(), RemoteError> {
        let freed = {
            let mut reg = self.registry();
            let e = reg.objects.get_mut(&obj).ok_or(RemoteError::UnknownObject(obj))?;
            e.refs += 1;
            let old = reg.names.insert(name.to_string(), obj);
            old.map(|old| reg.decref(old)).unwrap_or_default()
        };
        self.notify_freed(freed);
        Ok(())
    }

    fn lookup(&self, session: [u8; 16], name: &str, kind: Kind, types: &str) -> Result<u64, RemoteError> {
        let mut reg = self.registry();
        let &id = reg.names.get(name).ok_or_else(|| RemoteError::UnknownName(name.into()))?;
        reg.check(id, kind, types)?;
        reg.incref(session, id);
        Ok(id)
    }

    fn unpublish(&self, name: &str) -> Result<(), RemoteError> {
        let freed = {
            let mut reg = self.registry();
            let id = reg.names.remove(name).ok_or_else(|| RemoteError::UnknownName(name.into()))?;
            reg.decref(id)
        };
        self.notify_freed(freed);
        Ok(())
    }

    /// Waits until at most `max` objects live, for at most `wait`; returns whether they do.
    fn wait_count(&self, max: u64, wait: Wait) -> bool {
        let deadline = match wait {
            Wait::No => Some(Instant::now()),
            Wait::For(d) => Instant::now().checked_add(d),
            Wait::Forever => None,
        };
        let mut reg = self.registry();
        loop {
            if reg.objects.len() as u64 <= max {
                return true;
            }
            let slice = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(Duration::from_millis(100)),
                    _ => return false,
                },
                None => Duration::from_millis(100),
            };
            reg = self.freed.wait_timeout(reg, slice).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// The references of one container, for its operations to report what they store and
/// let go of (see [`Held`]); the objects freed meanwhile are dropped with it, outside
/// every lock.
pub(super) struct ContainerRefs<'s> {
    server: &'s Server,
    container: u64,
    session: [u8; 16],
    freed: RefCell<Vec<Arc<Object>>>,
}

impl<'s> ContainerRefs<'s> {
    pub(super) fn new(server: &'s Server, container: u64, session: [u8; 16]) -> ContainerRefs<'s> {
        ContainerRefs { server, container, session, freed: RefCell::new(Vec::new()) }
    }

    /// Applies `f` to each proxy of this server in `value`, under the registry's lock.
    /// Until a proxy has been sent (asked for a transit token), no value can hold one.
    fn each(&self, value: &[u8], f: impl Fn(&mut Registry, u64, u64) -> Vec<Arc<Object>>) {
        if !self.server.proxies_sent.load(Ordering::Relaxed) {
            return;
        }
        let found = held::proxies_in(value, &self.server.instance);
        if found.is_empty() {
            return;
        }
        let mut reg = self.server.registry();
        let mut freed = self.freed.borrow_mut();
        for (token, obj) in found {
            freed.extend(f(&mut reg, token, obj));
        }
    }
}

impl Held for ContainerRefs<'_> {
    fn stored(&self, value: &[u8]) {
        self.each(value, |reg, token, obj| {
            reg.hold(self.container, token, obj);
            Vec::new()
        });
    }

    fn dropped(&self, value: &[u8]) {
        self.each(value, |reg, token, _| reg.release_held(self.container, token));
    }

    fn taken(&self, value: &[u8]) {
        self.each(value, |reg, token, _| reg.take_held(self.container, token, self.session));
    }
}

impl Drop for ContainerRefs<'_> {
    fn drop(&mut self) {
        self.server.notify_freed(std::mem::take(self.freed.get_mut()));
    }
}
