//! Managers: shared dicts, lists, queues, values and locks living in a server process,
//! used from any process through proxies — Python's `multiprocessing.Manager()`.
//!
//! [`Manager::start`] starts a server process (a child like any other: it dies with its
//! parent, and stops on [`Manager::shutdown`] or drop) listening on a Unix socket in the
//! abstract namespace, with a random name and a random authkey. Its methods create
//! objects in the server and return typed proxies: [`DictProxy`], [`ListProxy`],
//! [`QueueProxy`], [`ValueProxy`], [`LockProxy`], ... A proxy is `Serialize`: pass it to a
//! [`Process`](crate::Process) (or a pool task) as an argument and the child connects to
//! the server by itself.
//!
//! ```
//! use multiproc::{Manager, Process};
//! use multiproc::manager::DictProxy;
//!
//! fn record(d: DictProxy<u32, String>) {
//!     d.insert(std::process::id(), "was here".into()).unwrap();
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiproc::init();
//!     let manager = Manager::start()?;
//!     let d = manager.dict::<u32, String>()?;
//!     let mut p = Process::new(record, d.clone());
//!     p.start()?;
//!     p.join()?;
//!     assert_eq!(d.values()?, vec!["was here".to_string()]);
//!     Ok(())
//! }
//! ```
//!
//! Beyond Python:
//! - **Atomic updates.** `d[k] += 1` from two Python processes loses updates (a get and a
//!   set). [`DictProxy::modify`] (and `modify` on lists, arrays, values) sends a plain
//!   `fn` that runs *in the server* under the object's lock: nothing is lost.
//! - **Your own types** live in the server through [`SharedObject`], and any function
//!   `fn(&mut T, A) -> R` is a method ([`ObjectProxy::call`]).
//! - **Remote managers** listen on TCP ([`ManagerBuilder::tcp`]) with an authkey; clients
//!   [`Manager::connect`]. Both ends prove they know the key (HMAC-SHA256 challenges, as
//!   Python's); a wrong key is refused and nothing is served before that.
//! - **Robust server.** A malformed, cut or oversized request gets an error reply or a
//!   closed connection, never a dead server. A client process that dies releases the
//!   objects it referenced and the locks it held.
//!
//! Keys and values travel as their serde encoding: the server stores the bytes, so dict
//! keys are equal when their encodings are (true of integers, strings, tuples and derived
//! types; don't use floats with several encodings of one value). A proxy stored *inside*
//! a manager container (a dict's or namespace's value, a list's, array's or queue's item,
//! a value) keeps its object alive, as in Python, until that value is removed or
//! overwritten or the container is freed; a removed value (`pop`, `remove`, a queue's
//! `get`) carries its reference to whoever receives it. Dict keys and your own
//! [`SharedObject`]s hold nothing: the server does not look inside them.
//!
//! An authenticated client can make the server run any function of the program (that is
//! what `modify` and custom objects do), as an authenticated Python client can unpickle
//! anything: keep the authkey secret. Clients of another build may use every object but
//! cannot name functions ([`ManagerError::DifferentBuild`]).

use crate::address;
mod auth;
mod client;
mod error;
mod functions;
mod handle;
mod protocol;
mod server;
mod shared_object;
mod slot;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::address::Address;
pub use error::ManagerError;

use client::Client;
use handle::Handle;
use protocol::{KIND_SERVER_FAILED, KIND_SERVER_SHUTDOWN, KIND_SERVER_STARTED, Wait, Writer, registry as op};
use server::{ServerConfig, Started};

use crate::spawn::{self, ChildProcess, ChildSpec};
use crate::wire::frame::Channel;
use crate::wire::{CodecError, codec};

/// Defines a proxy struct with the impls every proxy shares: `Clone` (a new counted
/// reference), `Debug`, `Serialize`/`Deserialize` (the transit protocol of `handle`).
macro_rules! proxy {
    ($(#[$m:meta])* $name:ident [$($g:ident),*], $kind:expr, $types:expr) => {
        $(#[$m])*
        pub struct $name<$($g),*> {
            h: $crate::manager::Handle,
            _t: ::std::marker::PhantomData<fn() -> ($($g,)*)>,
        }

        impl<$($g),*> $crate::manager::sealed::ProxyType for $name<$($g),*> {
            const KIND: $crate::manager::protocol::Kind = $kind;
            fn types() -> String {
                $types
            }
            fn from_handle(h: $crate::manager::Handle) -> Self {
                $name { h, _t: ::std::marker::PhantomData }
            }
            fn handle(&self) -> &$crate::manager::Handle {
                &self.h
            }
        }

        impl<$($g),*> $crate::manager::Proxy for $name<$($g),*> {}

        impl<$($g),*> Clone for $name<$($g),*> {
            fn clone(&self) -> Self {
                use $crate::manager::sealed::ProxyType;
                Self::from_handle(self.h.duplicate(&Self::types()))
            }
        }

        impl<$($g),*> ::std::fmt::Debug for $name<$($g),*> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.h)
            }
        }

        impl<$($g),*> ::serde::Serialize for $name<$($g),*> {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use $crate::manager::sealed::ProxyType;
                self.h.serialize(s, &Self::types())
            }
        }

        impl<'de, $($g),*> ::serde::Deserialize<'de> for $name<$($g),*> {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use $crate::manager::sealed::ProxyType;
                $crate::manager::Handle::deserialize(d, Self::KIND, &Self::types()).map(Self::from_handle)
            }
        }
    };
}

mod dict;
mod list;
mod object;
mod queue;
mod queue_async;
mod sync;
mod value;

pub use dict::{DICT_ITER_CHUNK, DictIter, DictProxy};
pub use list::{ArrayProxy, ListProxy};
pub use object::ObjectProxy;
pub use queue::{JoinableQueueProxy, QueueProxy};
pub use queue_async::{ProxyGet, ProxyPut};
pub use shared_object::SharedObject;
pub use sync::{BarrierProxy, ConditionProxy, EventProxy, LockGuard, LockProxy, RLockProxy, SemaphoreProxy};
pub use value::{NamespaceProxy, ValueProxy};

pub(crate) mod sealed {
    /// What the manager needs of a proxy type; not implementable outside the crate.
    pub trait ProxyType: Sized {
        #[doc(hidden)]
        const KIND: super::protocol::Kind;
        #[doc(hidden)]
        fn types() -> String;
        #[doc(hidden)]
        fn from_handle(h: super::Handle) -> Self;
        #[doc(hidden)]
        fn handle(&self) -> &super::Handle;
    }
}

/// A proxy of any kind: what [`Manager::publish`] and [`Manager::lookup`] take.
///
/// Every proxy type implements it: [`DictProxy`], [`ListProxy`], [`QueueProxy`], ...
/// Each is `Clone` (another reference to the same object), `Debug` (its kind, id and
/// server, without asking the server) and `Serialize + Deserialize` (it travels to
/// another process, which then connects to the server by itself).
///
/// ```
/// use multiproc::manager::DictProxy;
///
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// let scores = manager.dict::<String, u32>()?;
/// manager.publish("scores", &scores)?; // any proxy, under a name
/// let same: DictProxy<String, u32> = manager.lookup("scores")?;
/// same.set("app".to_string(), 3)?;
/// assert_eq!(scores.get("app")?, Some(3));
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
pub trait Proxy: sealed::ProxyType + Serialize + DeserializeOwned + Clone + std::fmt::Debug {}

/// A handle on a manager's server: creates shared objects and returns proxies to them.
///
/// [`Manager::start`] starts a server process of its own and shuts it down on
/// [`shutdown`](Manager::shutdown) or drop; [`Manager::connect`] talks to a server
/// started elsewhere (see [`ManagerBuilder`] for TCP servers).
///
/// ```
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// let q = manager.queue::<String>(10)?;
/// q.put("hello".to_string())?;
/// assert_eq!(q.get()?, "hello");
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
pub struct Manager {
    client: Arc<Client>,
    server: Option<ServerProcess>,
}

struct ServerProcess {
    process: ChildProcess,
    lifeline: Channel,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.client.address)
            .field("server_pid", &self.client.server_pid())
            .field("owns_server", &self.server.is_some())
            .finish()
    }
}

/// How to start (or run) a manager's server: its address, authkey and limits.
///
/// ```
/// multiproc::init();
/// let manager = multiproc::Manager::builder()
///     .tcp("127.0.0.1:0".parse().unwrap()) // port 0: any free port
///     .authkey(b"secret")
///     .start()?;
/// let port = match manager.address() {
///     multiproc::manager::Address::Tcp(a) => a.port(),
///     _ => unreachable!(),
/// };
/// assert_ne!(port, 0);
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ManagerBuilder {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    max_request: u32,
    start_timeout: Duration,
}

static NEXT_MANAGER: AtomicU32 = AtomicU32::new(1);

impl ManagerBuilder {
    /// Listens on this TCP address (port 0: any free port; see [`Manager::address`]).
    pub fn tcp(mut self, address: std::net::SocketAddr) -> ManagerBuilder {
        self.address = Some(Address::Tcp(address));
        self
    }

    /// Listens on this address (default: a random abstract Unix socket name).
    pub fn address(mut self, address: Address) -> ManagerBuilder {
        self.address = Some(address);
        self
    }

    /// The key clients must prove they know (default: 32 random bytes, which the
    /// manager's proxies carry to the processes they are sent to).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().authkey("a key").start()?;
    /// assert_eq!(manager.authkey(), b"a key");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> ManagerBuilder {
        self.authkey = Some(key.as_ref().to_vec());
        self
    }

    /// The largest request or reply, in bytes (default 2 GiB). A larger request is
    /// refused by the client before sending; one that arrives anyway closes its connection.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().max_request(1 << 20).start()?;
    /// drop(manager);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_request(mut self, bytes: u32) -> ManagerBuilder {
        self.max_request = bytes.max(1024);
        self
    }

    /// How long [`start`](Self::start) waits for the server to listen (default 30 s).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().start_timeout(std::time::Duration::from_secs(30)).start()?;
    /// drop(manager);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_timeout(mut self, timeout: Duration) -> ManagerBuilder {
        self.start_timeout = timeout;
        self
    }

    fn config(&self) -> Result<ServerConfig, ManagerError> {
        let address = match &self.address {
            Some(a) => a.clone(),
            None => address::random_local().map_err(|e| ManagerError::Start(e.into()))?,
        };
        let authkey = match &self.authkey {
            Some(k) => k.clone(),
            None => {
                let mut k = vec![0u8; 32];
                auth::random_bytes(&mut k).map_err(|e| ManagerError::Start(e.into()))?;
                k
            }
        };
        Ok(ServerConfig { address, authkey, max_request: self.max_request })
    }

    /// Starts the server in a child process and connects to it.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().start()?;
    /// assert!(manager.pid().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(self) -> Result<Manager, ManagerError> {
        let config = self.config()?;
        let n = NEXT_MANAGER.fetch_add(1, Ordering::Relaxed);
        let mut identity = spawn::identity().identity.clone();
        identity.push(n);
        let spec = ChildSpec {
            name: format!("Manager-{n}"),
            identity,
            daemon: false,
            executable: None,
            start_timeout: self.start_timeout,
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
            isolation: crate::isolation::Policy::none(),
            huge_pages: false,
        };
        let spawned = spawn::start(server::server_entry, "multiproc::manager::server", &spec, |buf| {
            codec::encode_into(&config, buf)
        })?;
        let mut server = ServerProcess { process: spawned.process, lifeline: spawned.channel };
        let deadline = Instant::now() + self.start_timeout;
        let started = match server.lifeline.recv(Some(deadline)) {
            Ok(f) if f.kind == KIND_SERVER_STARTED => f.decode::<Started>().map_err(ManagerError::Codec),
            Ok(f) if f.kind == KIND_SERVER_FAILED => Err(ManagerError::Bind {
                address: config.address.clone(),
                message: f.decode::<String>().unwrap_or_else(|e| e.to_string()),
            }),
            Ok(f) => Err(ManagerError::Handshake {
                address: config.address.clone(),
                reason: format!("unexpected frame kind {:#04x} from the server", f.kind),
            }),
            Err(source) => Err(ManagerError::Disconnected { address: config.address.clone(), source }),
        };
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                let _ = server.process.kill_and_reap();
                return Err(e);
            }
        };
        match Client::shared(&started.address, &config.authkey, None) {
            Ok(client) => Ok(Manager { client, server: Some(server) }),
            Err(e) => {
                let _ = server.process.kill_and_reap();
                Err(e)
            }
        }
    }

    /// Runs the server in this process, serving until the process ends; returns only if
    /// it cannot listen or accept. For a standalone server program.
    pub fn serve_forever(self) -> Result<std::convert::Infallible, ManagerError> {
        let config = self.config()?;
        let (listener, _) = address::Listener::bind(&config.address)
            .map_err(|e| ManagerError::Bind { address: config.address.clone(), message: e.to_string() })?;
        let server = server::Server::new(config.authkey, config.max_request);
        let e = server::accept_loop(server, listener);
        Err(ManagerError::Bind { address: config.address, message: e.to_string() })
    }
}

impl Manager {
    /// Starts a manager's server process on a random abstract Unix socket with a random
    /// authkey (Python's `multiprocessing.Manager()`).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// assert!(manager.pid().is_some());
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn start() -> Result<Manager, ManagerError> {
        Manager::builder().start()
    }

    /// A builder for a server with a chosen address (TCP for remote clients) and authkey.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().authkey(b"secret").start()?;
    /// assert_eq!(manager.authkey(), b"secret");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            address: None,
            authkey: None,
            max_request: crate::wire::DEFAULT_MAX_FRAME,
            start_timeout: spawn::DEFAULT_START_TIMEOUT,
        }
    }

    /// Connects to a server started elsewhere, proving the authkey (and checking that
    /// the server knows it too). A wrong key is [`ManagerError::AuthenticationFailed`].
    ///
    /// ```
    /// multiproc::init();
    /// let server = multiproc::Manager::builder().authkey(b"k").start()?;
    /// let client = multiproc::Manager::connect(server.address(), b"k")?;
    /// let wrong = multiproc::Manager::connect(server.address(), b"guess");
    /// assert!(matches!(wrong, Err(multiproc::ManagerError::AuthenticationFailed { .. })));
    /// # drop(client);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn connect(address: &Address, authkey: impl AsRef<[u8]>) -> Result<Manager, ManagerError> {
        Ok(Manager { client: Client::shared(address, authkey.as_ref(), None)?, server: None })
    }

    /// The server's address (with the actual port, when started on TCP port 0).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// println!("serving at {:?}", manager.address());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn address(&self) -> &Address {
        &self.client.address
    }

    /// The authkey clients must know.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// assert!(!manager.authkey().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn authkey(&self) -> &[u8] {
        &self.client.authkey
    }

    /// The server's process id (a connected server's too).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// assert!(manager.pid().is_some()); // a server this process started
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pid(&self) -> Option<u32> {
        Some(self.client.server_pid())
    }

    /// Stops the server this manager started: it exits at once and every proxy's next
    /// call fails with [`ManagerError::Disconnected`]. For a connected manager, a no-op.
    ///
    /// ```
    /// multiproc::init();
    /// let mut manager = multiproc::Manager::start()?;
    /// let v = manager.value(1u8)?;
    /// manager.shutdown()?;
    /// assert!(matches!(v.get(), Err(multiproc::ManagerError::Disconnected { .. })));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn shutdown(&mut self) -> Result<(), ManagerError> {
        let Some(mut server) = self.server.take() else { return Ok(()) };
        let _ = server.lifeline.send(KIND_SERVER_SHUTDOWN, &());
        match server.process.wait_timeout(Some(Duration::from_secs(5))) {
            Ok(Some(_)) => Ok(()),
            _ => {
                server.process.kill_and_reap().map_err(|e| ManagerError::Start(e.into()))?;
                Ok(())
            }
        }
    }

    fn create<P: Proxy>(
        &self,
        init: impl FnOnce(&mut Writer<'_>) -> Result<(), CodecError>,
    ) -> Result<P, ManagerError> {
        let types = P::types();
        let id = self.client.call(
            op::CREATE,
            |w| {
                w.u8(P::KIND as u8).str(&types);
                init(w)
            },
            client::value::<u64>,
        )?;
        Ok(P::from_handle(Handle::counted(self.client.clone(), id, P::KIND)))
    }

    /// A new, empty shared dict (insertion-ordered, as Python's).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<u32, String>()?;
    /// d.set(1, "one".into())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>, ManagerError> {
        self.create(|_| Ok(()))
    }

    /// A new, empty shared list.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<String>()?;
    /// l.push("x".into())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn list<T>(&self) -> Result<ListProxy<T>, ManagerError> {
        self.create(|w| {
            w.u32(0);
            Ok(())
        })
    }

    /// A new shared queue holding at most `maxsize` items (0: no limit), as Python's
    /// `Manager().Queue(maxsize)`.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue::<u32>(10)?; // at most 10 items
    /// q.put(1)?;
    /// assert_eq!(q.get()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue<T>(&self, maxsize: usize) -> Result<QueueProxy<T>, ManagerError> {
        self.create(|w| {
            w.u64(maxsize as u64);
            Ok(())
        })
    }

    /// A new shared queue with `task_done` and `join` (Python's `JoinableQueue`).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.joinable_queue::<u32>(0)?;
    /// q.put(1)?;
    /// q.get()?;
    /// q.task_done()?;
    /// q.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn joinable_queue<T>(&self, maxsize: usize) -> Result<JoinableQueueProxy<T>, ManagerError> {
        self.create(|w| {
            w.u64(maxsize as u64);
            Ok(())
        })
    }

    /// A new shared value holding `initial`.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let v = manager.value(1.5f64)?;
    /// assert_eq!(v.get()?, 1.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn value<T: Serialize>(&self, initial: T) -> Result<ValueProxy<T>, ManagerError> {
        self.create(|w| w.value(&initial).map(drop))
    }

    /// A new shared array of fixed length holding `items` (Python's `Manager().Array`).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array(vec![0u8; 4])?;
    /// assert_eq!(a.len()?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn array<T: Serialize>(&self, items: impl IntoIterator<Item = T>) -> Result<ArrayProxy<T>, ManagerError> {
        self.create(|w| list::write_items::<T, T>(w, items))
    }

    /// A new shared namespace: named attributes of any serializable type.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("done", &true)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn namespace(&self) -> Result<NamespaceProxy, ManagerError> {
        self.create(|_| Ok(()))
    }

    /// A new lock, held by one thread of one process at a time (not reentrant).
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let lock = manager.lock()?;
    /// let held = lock.lock()?;
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock(&self) -> Result<LockProxy, ManagerError> {
        self.create(|_| Ok(()))
    }

    /// A new reentrant lock: its owner (a thread of a process) may acquire it again.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let lock = manager.rlock()?;
    /// let outer = lock.lock()?;
    /// let inner = lock.lock()?; // recursive
    /// drop((inner, outer));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rlock(&self) -> Result<RLockProxy, ManagerError> {
        self.create(|_| Ok(()))
    }

    /// A new semaphore with `value` permits.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.semaphore(2)?;
    /// assert_eq!(s.value()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn semaphore(&self, value: usize) -> Result<SemaphoreProxy, ManagerError> {
        self.create(|w| {
            w.u64(value as u64).u8(0);
            Ok(())
        })
    }

    /// A new semaphore that refuses to be released above its initial `value`.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.bounded_semaphore(1)?;
    /// assert!(s.release().is_err()); // above its bound
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bounded_semaphore(&self, value: usize) -> Result<SemaphoreProxy, ManagerError> {
        self.create(|w| {
            w.u64(value as u64).u8(1);
            Ok(())
        })
    }

    /// A new event, initially not set.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let e = manager.event()?;
    /// e.set()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn event(&self) -> Result<EventProxy, ManagerError> {
        self.create(|_| Ok(()))
    }

    /// A new condition variable with its own reentrant lock.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let c = manager.condition()?;
    /// let held = c.lock()?;
    /// c.notify_all()?;
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn condition(&self) -> Result<ConditionProxy, ManagerError> {
        self.create(|_| Ok(()))
    }

    /// A new barrier for `parties` waiters.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let b = manager.barrier(1)?;
    /// b.wait()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn barrier(&self, parties: usize) -> Result<BarrierProxy, ManagerError> {
        self.create(|w| {
            w.u64(parties as u64);
            Ok(())
        })
    }

    /// A new object of your own type `T`, built in the server by `T::create(init)`.
    /// See [`SharedObject`].
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// /// A counter in the server.
    /// struct Counter(u64);
    /// impl multiproc::manager::SharedObject for Counter {
    ///     type Init = u64;
    ///     fn create(start: u64) -> Counter { Counter(start) }
    /// }
    /// let c = manager.create_object::<Counter>(1)?;
    /// assert_eq!(c.call(|c: &mut Counter, ()| c.0, ())?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_object<T: SharedObject>(&self, init: T::Init) -> Result<ObjectProxy<T>, ManagerError> {
        let ctor = functions::create_fn::<T>();
        self.create(|w| {
            w.i64(ctor).value(&init)?;
            Ok(())
        })
    }

    /// Publishes `proxy`'s object under `name`, so clients can [`lookup`](Self::lookup) it;
    /// the server keeps it alive until [`unpublish`](Self::unpublish)ed. A name already in
    /// use now names this object.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let jobs = manager.queue::<u32>(0)?;
    /// manager.publish("jobs", &jobs)?;
    /// let same: multiproc::manager::QueueProxy<u32> = manager.lookup("jobs")?;
    /// same.put(7)?;
    /// assert_eq!(jobs.get()?, 7);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn publish<P: Proxy>(&self, name: &str, proxy: &P) -> Result<(), ManagerError> {
        let id = proxy.handle().id;
        self.client.call(
            op::PUBLISH,
            |w| {
                w.str(name).u64(id);
                Ok(())
            },
            client::unit,
        )
    }

    /// A proxy of the object published under `name`; an error if there is none, or if it
    /// is not a `P`.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue::<u32>(0)?;
    /// manager.publish("jobs", &q)?;
    /// let same: multiproc::manager::QueueProxy<u32> = manager.lookup("jobs")?;
    /// same.put(1)?;
    /// assert_eq!(q.get()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lookup<P: Proxy>(&self, name: &str) -> Result<P, ManagerError> {
        let types = P::types();
        let id = self.client.call(
            op::LOOKUP,
            |w| {
                w.str(name).u8(P::KIND as u8).str(&types);
                Ok(())
            },
            client::value::<u64>,
        )?;
        Ok(P::from_handle(Handle::counted(self.client.clone(), id, P::KIND)))
    }

    /// Removes a published name; its object lives on while proxies refer to it.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// manager.publish("d", &d)?;
    /// manager.unpublish("d")?;
    /// assert!(manager.lookup::<multiproc::manager::DictProxy<String, u32>>("d").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unpublish(&self, name: &str) -> Result<(), ManagerError> {
        self.client.call(
            op::UNPUBLISH,
            |w| {
                w.str(name);
                Ok(())
            },
            client::unit,
        )
    }

    /// How many objects the server holds (a diagnostic, like Python's
    /// `_number_of_objects`): each lives while a proxy, a proxy in transit, or a
    /// published name refers to it.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<u8, u8>()?;
    /// assert_eq!(manager.object_count()?, 1);
    /// drop(d);
    /// assert!(manager.wait_object_count(0, std::time::Duration::from_secs(10))?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn object_count(&self) -> Result<usize, ManagerError> {
        self.client.call(op::COUNT, |_| Ok(()), client::value::<u64>).map(|n| n as usize)
    }

    /// Waits until the server holds at most `max` objects, for at most `timeout`;
    /// returns whether it does. Dropped proxies are released asynchronously, so this is
    /// how to see that they were.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<u8, u8>()?;
    /// drop(d);
    /// assert!(manager.wait_object_count(0, std::time::Duration::from_secs(10))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_object_count(&self, max: usize, timeout: Duration) -> Result<bool, ManagerError> {
        self.client.call(
            op::WAIT_COUNT,
            |w| {
                w.u64(max as u64).u64(Wait::micros(Some(timeout)));
                Ok(())
            },
            client::value::<bool>,
        )
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
