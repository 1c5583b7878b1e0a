//! The registry's table: every object with its reference count, the sessions (client
//! processes) that hold those references, references in transit between processes, and
//! names. The server's requests on it are in `registry.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use super::objects::Object;
use crate::manager::protocol::{Kind, RemoteError};

pub(super) struct Entry {
    pub(super) obj: Arc<Object>,
    pub(super) refs: u64,
}

#[derive(Default)]
pub(super) struct Session {
    pub(super) connections: u64,
    pub(super) refs: HashMap<u64, u64>,
    /// References held for proxies on their way to another process, by token.
    pub(super) transit: HashMap<u64, u64>,
}

#[derive(Default)]
pub(super) struct Registry {
    pub(super) objects: HashMap<u64, Entry>,
    pub(super) sessions: HashMap<[u8; 16], Session>,
    /// token -> (session, object) for every reference in transit.
    pub(super) transit: HashMap<u64, ([u8; 16], u64)>,
    pub(super) names: HashMap<String, u64>,
    /// container -> token -> (object, count): the references containers hold for the
    /// proxies stored in them (see `objects::held`).
    pub(super) holds: HashMap<u64, HashMap<u64, (u64, u64)>>,
    pub(super) next_id: u64,
    pub(super) next_token: u64,
}

impl Registry {
    pub(super) fn new() -> Registry {
        Registry { next_id: 1, next_token: 1, ..Registry::default() }
    }

    pub(super) fn check(&self, id: u64, kind: Kind, types: &str) -> Result<(), RemoteError> {
        let e = self.objects.get(&id).ok_or(RemoteError::UnknownObject(id))?;
        if e.obj.kind != kind || &*e.obj.types != types {
            return Err(RemoteError::WrongType { id, expected: types.into(), found: e.obj.types.to_string() });
        }
        Ok(())
    }

    pub(super) fn incref(&mut self, session: [u8; 16], id: u64) {
        if let Some(e) = self.objects.get_mut(&id) {
            e.refs += 1;
            *self.sessions.entry(session).or_default().refs.entry(id).or_default() += 1;
        }
    }

    /// Drops one reference; returns the objects freed: this one if that was its last,
    /// and those only it held.
    pub(super) fn decref(&mut self, id: u64) -> Vec<Arc<Object>> {
        let (mut freed, mut next) = (Vec::new(), vec![id]);
        while let Some(id) = next.pop() {
            let Some(e) = self.objects.get_mut(&id) else { continue };
            e.refs -= 1;
            if e.refs > 0 {
                continue;
            }
            freed.extend(self.objects.remove(&id).map(|e| e.obj));
            for (obj, n) in self.holds.remove(&id).into_iter().flat_map(HashMap::into_values) {
                next.extend(std::iter::repeat_n(obj, n as usize));
            }
        }
        freed
    }

    /// `container` stores a proxy of `obj` sent with `token`: the reference in transit
    /// becomes the container's. The same bytes stored again add a reference.
    pub(super) fn hold(&mut self, container: u64, token: u64, obj: u64) {
        match self.transit.get(&token) {
            Some(&(from, o)) if o == obj => {
                self.transit.remove(&token);
                if let Some(s) = self.sessions.get_mut(&from) {
                    s.transit.remove(&token);
                }
            }
            _ => {
                let held = self.holds.get(&container).and_then(|h| h.get(&token)).is_some_and(|h| h.0 == obj);
                match self.objects.get_mut(&obj) {
                    Some(e) if held => e.refs += 1,
                    _ => return,
                }
            }
        }
        self.holds.entry(container).or_default().entry(token).or_insert((obj, 0)).1 += 1;
    }

    /// Takes one of `container`'s references under `token` away from it; returns its object.
    pub(super) fn unhold(&mut self, container: u64, token: u64) -> Option<u64> {
        let h = self.holds.get_mut(&container)?;
        let e = h.get_mut(&token)?;
        let obj = e.0;
        e.1 -= 1;
        if e.1 == 0 {
            h.remove(&token);
            if h.is_empty() {
                self.holds.remove(&container);
            }
        }
        Some(obj)
    }

    /// `container` lets go of a stored proxy; returns the objects freed.
    pub(super) fn release_held(&mut self, container: u64, token: u64) -> Vec<Arc<Object>> {
        self.unhold(container, token).map(|obj| self.decref(obj)).unwrap_or_default()
    }

    /// A stored proxy leaves `container` for `session` (a `pop`, a queue's `get`): the
    /// reference goes back in transit, for the requester to adopt when it decodes it.
    pub(super) fn take_held(&mut self, container: u64, token: u64, session: [u8; 16]) -> Vec<Arc<Object>> {
        let Some(obj) = self.unhold(container, token) else { return Vec::new() };
        if self.transit.contains_key(&token) {
            // The same bytes already travel (taken twice): one reference is enough.
            return self.decref(obj);
        }
        self.transit.insert(token, (session, obj));
        self.sessions.entry(session).or_default().transit.insert(token, obj);
        Vec::new()
    }

    /// Ends a session: forgets its transit tokens and drops its references. Returns the
    /// objects it referenced (to release its locks on) and those now freed.
    pub(super) fn end_session(&mut self, session: [u8; 16]) -> (Vec<Arc<Object>>, Vec<Arc<Object>>) {
        let (mut held, mut freed) = (Vec::new(), Vec::new());
        let Some(s) = self.sessions.remove(&session) else { return (held, freed) };
        for token in s.transit.keys() {
            self.transit.remove(token);
        }
        let ids = s.refs.iter().flat_map(|(&id, &n)| std::iter::repeat_n(id, n as usize));
        for id in ids.chain(s.transit.values().copied()) {
            if let Some(e) = self.objects.get(&id) {
                held.push(e.obj.clone());
            }
            freed.extend(self.decref(id));
        }
        (held, freed)
    }
}
