//! The server's shared state and one connection's own, below the files that serve
//! requests on them (`registry.rs`, `connection.rs`, `mod.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, Weak};

use super::objects::Object;
use super::table::Registry;
use crate::spawn::identity::SameBuild;

/// A running server's shared state.
pub(crate) struct Server {
    /// This run's random name, told to every client (see `SessionReady`).
    pub(crate) instance: [u8; 16],
    pub(super) authkey: Vec<u8>,
    pub(super) max_request: u32,
    pub(super) registry: Mutex<Registry>,
    /// Whether a client ever asked for a transit token: until then no stored value can
    /// hold a proxy, and containers do not look for any.
    pub(super) proxies_sent: AtomicBool,
    /// Signalled whenever objects are freed (for `wait_object_count`).
    pub(super) freed: Condvar,
    pub(super) connections: AtomicU64,
}

/// What a served request leaves to the connection.
pub(crate) enum Served {
    Reply,
    /// The object and its id.
    ReplyOrRequeue(Arc<Object>, u64),
    Silent,
}

impl Server {
    pub(crate) fn new(authkey: Vec<u8>, max_request: u32) -> Arc<Server> {
        Arc::new(Server {
            instance: instance_name(),
            authkey,
            max_request,
            registry: Mutex::new(Registry::new()),
            proxies_sent: AtomicBool::new(false),
            freed: Condvar::new(),
            connections: AtomicU64::new(0),
        })
    }
}

/// A random name for this run of a server. Without the random source (never seen), the
/// process id and the clock still tell runs apart.
fn instance_name() -> [u8; 16] {
    let mut name = [0u8; 16];
    if crate::manager::auth::random_bytes(&mut name).is_err() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        name[..4].copy_from_slice(&std::process::id().to_le_bytes());
        name[4..].copy_from_slice(&now.as_nanos().to_le_bytes()[..12]);
    }
    name
}

/// One connection's own state.
pub(crate) struct Connection {
    pub(super) session: [u8; 16],
    pub(super) same_build: Option<SameBuild>,
    /// The objects this connection used, so that operations skip the registry's lock.
    pub(super) cache: HashMap<u64, Weak<Object>>,
    cache_limit: usize,
}

impl Connection {
    pub(super) fn new(session: [u8; 16], same_build: Option<SameBuild>) -> Connection {
        Connection { session, same_build, cache: HashMap::new(), cache_limit: 64 }
    }

    /// Caches `obj`, first forgetting freed objects when the cache is full.
    pub(super) fn remember(&mut self, id: u64, obj: &Arc<Object>) {
        if self.cache.len() >= self.cache_limit {
            self.cache.retain(|_, w| w.strong_count() > 0);
            self.cache_limit = (self.cache.len() * 2).max(64);
        }
        self.cache.insert(id, Arc::downgrade(obj));
    }
}
