//! `PoolBuilder`: every setting of a pool, then `build`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::engine::{Engine, Shared};
use super::error::PoolError;
use super::handle::Pool;
use super::local::Local;
use super::local::worker_handle::WorkerConfig;
use super::trampoline::{InitTrampoline, init_trampoline};
use crate::spawn::forkserver::ForkServer;
use crate::spawn::{self, ChildSpec};
use crate::wire::codec;

/// Builds a [`Pool`]; from [`Pool::builder`].
///
/// ```
/// use std::time::Duration;
/// fn hello(tag: String) { println!("{tag} {}", multiproc::current_process().name()) }
/// fn double(x: u64) -> u64 { x * 2 }
///
/// multiproc::init();
/// let pool = multiproc::Pool::builder()
///     .processes(2)
///     .initializer(hello, "Starting".to_string())
///     .max_tasks_per_child(100)
///     .timeout(Duration::from_secs(60))
///     .retries(1)
///     .build()
///     .unwrap();
/// assert_eq!(pool.map(double, 0..4).unwrap(), [0, 2, 4, 6]);
/// ```
#[derive(Debug)]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<(i64, i64, Result<Vec<u8>, String>)>,
    initializer_name: &'static str,
    max_tasks: Option<u64>,
    max_memory: Option<u64>,
    address_space: Option<u64>,
    timeout: Option<Duration>,
    soft_timeout: Option<Duration>,
    retries: u32,
    start_timeout: Duration,
    executable: Option<PathBuf>,
    max_frame: u32,
    retry_timeouts: bool,
    isolation: crate::isolation::Policy,
    /// `None`: `MULTIPROC_START_METHOD`, else exec.
    start_method: Option<super::options::StartMethod>,
    preload: Option<fn()>,
    /// A fork server shared with other pools.
    shared_fork_server: Option<super::ForkServer>,
}

impl PoolBuilder {
    pub(crate) fn new() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            initializer: None,
            initializer_name: "",
            max_tasks: None,
            max_memory: None,
            address_space: None,
            timeout: None,
            soft_timeout: None,
            retries: 0,
            start_timeout: spawn::DEFAULT_START_TIMEOUT,
            executable: None,
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
            retry_timeouts: false,
            isolation: crate::isolation::Policy::default(),
            start_method: None,
            preload: None,
            shared_fork_server: None,
        }
    }

    /// How workers start (default [`StartMethod::Exec`](crate::StartMethod), or what
    /// `MULTIPROC_START_METHOD=exec|fork-server` in the environment says when this is
    /// not called).
    /// [`StartMethod::ForkServer`](crate::StartMethod) forks them from a template process:
    /// a replacement after a crash or a timeout costs a fork instead of an exec, and
    /// what [`preload`](Self::preload) loaded is shared by every worker.
    pub fn start_method(mut self, method: crate::StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// With [`StartMethod::ForkServer`](crate::StartMethod): `f` runs once in the
    /// template before it forks any worker, so what it loads into statics (a model, a
    /// dictionary, a large read-only table) is in every worker, shared copy-on-write,
    /// replacements included. A preload that panics fails [`build`](Self::build), and so
    /// does one that leaves a thread running (the template forks only while
    /// single-threaded); one that starts a process leaves it outside any containment.
    ///
    /// A fork copies the page tables of what the preload filled. So that this stays cheap
    /// for a large table, the template's C library backs large allocations with
    /// transparent huge pages (glibc's `glibc.malloc.hugetlb=1`, for the template only):
    /// one entry per 2 MiB instead of one per 4 KiB, about 30 ms less per worker for
    /// 512 MiB. Workers inherit it with the template's allocator; what they start does
    /// not. Where the kernel's huge pages are off (`never`), or with another allocator,
    /// forks are slower but the same.
    ///
    /// ```
    /// use std::sync::OnceLock;
    /// static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
    /// fn load() { TABLE.get_or_init(|| (0..1000).map(|i| i * i).collect()); }
    /// fn lookup(i: usize) -> u64 { TABLE.get().map_or(0, |t| t[i]) }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder()
    ///     .start_method(multiproc::StartMethod::ForkServer)
    ///     .preload(load)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.apply(lookup, 12).unwrap(), 144);
    /// ```
    pub fn preload(mut self, f: fn()) -> Self {
        self.preload = Some(f);
        self
    }

    /// Forks the workers from `server`, a template other pools may share (started once,
    /// with its own preload): the pool starts no template of its own, so its first
    /// workers come at fork speed. Implies [`StartMethod::ForkServer`](crate::StartMethod);
    /// with [`preload`](Self::preload) or `StartMethod::Exec` as well, [`build`](Self::build)
    /// fails (the preload belongs to the server). The pool keeps the server running.
    ///
    /// ```
    /// fn double(x: u64) -> u64 { x * 2 }
    /// multiproc::init();
    /// let server = multiproc::ForkServer::start()?;
    /// let pool = multiproc::Pool::builder().processes(2).fork_server(&server).build()?;
    /// assert_eq!(pool.apply(double, 21)?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fork_server(mut self, server: &super::ForkServer) -> Self {
        self.shared_fork_server = Some(server.clone());
        self
    }

    /// How each worker's descendants are contained (default [`Contain::Auto`](crate::Contain)):
    /// whatever a task starts — a child, a double-forked daemon, a process in a session
    /// of its own — dies when its worker ends, is killed for a timeout, or when this
    /// program is SIGKILLed. The mechanism in effect is in
    /// [`PoolStats::containment`](crate::PoolStats); [`Contain::Cgroup`](crate::Contain)
    /// makes `build` fail where no cgroup can be had.
    ///
    /// ```
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder().processes(1).contain(multiproc::Contain::ProcessTree).build().unwrap();
    /// assert_eq!(pool.stats().containment, multiproc::Containment::ProcessTree);
    /// ```
    pub fn contain(mut self, contain: crate::Contain) -> Self {
        self.isolation.contain = contain;
        self
    }

    /// Resource limits for every worker (CPU time, open files, file size, processes,
    /// niceness, CPU affinity), set before its initializer. A worker that a limit ends
    /// fails its task with [`TaskError::WorkerDied`](crate::TaskError::WorkerDied) naming
    /// the limit ("CPU time limit (RLIMIT_CPU) after 2 s"), and is replaced.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::builder().processes(1).limits(multiproc::Limits::new().open_files(256)).build()?;
    /// assert_eq!(pool.apply(square, 3)?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn limits(mut self, limits: crate::Limits) -> Self {
        self.isolation.limits = limits;
        self
    }

    /// Confines every worker with `sandbox` after its initializer (which may still open
    /// files, load a model) and before its first task. A task that makes a denied system
    /// call fails with [`TaskError::WorkerDied`](crate::TaskError::WorkerDied) naming the
    /// rule ("sandbox: `socket` denied (no network)"); the worker is replaced and the pool
    /// goes on. `build` fails if the kernel lacks what the sandbox needs, unless
    /// [`Sandbox::best_effort`](crate::Sandbox::best_effort).
    #[cfg(feature = "sandbox")]
    pub fn sandbox(mut self, sandbox: crate::Sandbox) -> Self {
        self.isolation.sandbox = Some(sandbox);
        self
    }

    /// How many workers (default: [`cpu_count()`](crate::cpu_count)).
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::builder().processes(1).build()?;
    /// assert_eq!(pool.apply(square, 3)?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Runs `f(arg)` once in every worker before its first task — replacements too. An
    /// initializer that panics or kills its worker fails [`build`](PoolBuilder::build);
    /// if it starts failing later, the pool stops restarting workers after three
    /// failures in a row and fails its tasks with [`TaskError::PoolBroken`](crate::TaskError::PoolBroken).
    ///
    /// ```
    /// multiproc::init();
    /// fn greet(name: String) { eprintln!("worker {} ready for {name}", std::process::id()) }
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::builder().processes(1).initializer(greet, "squares".to_string()).build()?;
    /// assert_eq!(pool.apply(square, 3)?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn initializer<F, A>(mut self, f: F, arg: A) -> Self
    where
        F: Fn(A) + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        let function = spawn::identity::encode_fn::<F, fn(A)>(f);
        let trampoline = spawn::identity::offset_of(init_trampoline::<F, A> as InitTrampoline as usize);
        let arg = codec::encode(&arg).map_err(|e| e.to_string());
        self.initializer = Some((trampoline, function, arg));
        self.initializer_name = std::any::type_name::<F>();
        self
    }

    /// Replaces a worker after it ran `n` tasks (Python's `maxtasksperchild`; a chunk is
    /// one task). At least 1: [`build`](PoolBuilder::build) refuses 0, as Python does.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::builder().processes(1).max_tasks_per_child(100).build()?;
    /// assert_eq!(pool.apply(square, 3)?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// Replaces a worker whose resident memory is above `bytes` after a task; the task's
    /// result is kept.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::builder().processes(1).max_memory_per_child(512 << 20).build()?;
    /// assert_eq!(pool.apply(square, 3)?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_memory_per_child(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// The largest message between the pool and a worker, in bytes (default
    /// [`DEFAULT_MAX_FRAME`](crate::wire::DEFAULT_MAX_FRAME)): a task whose argument is
    /// larger fails with [`TaskError::Codec`](crate::TaskError::Codec) before it is sent,
    /// and one whose result is larger fails the same way after it ran (its worker goes
    /// on). A cap on what one task may send back.
    ///
    /// ```
    /// fn blob(n: usize) -> Vec<u8> { vec![7; n] }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder().processes(1).max_frame_size(64 << 10).build().unwrap();
    /// assert_eq!(pool.apply(blob, 10).unwrap().len(), 10);
    /// let too_big = pool.apply(blob, 1 << 20).unwrap_err();
    /// assert!(too_big.to_string().contains("cannot be sent"), "{too_big}");
    /// assert_eq!(pool.apply(blob, 3).unwrap().len(), 3);
    /// ```
    pub fn max_frame_size(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self
    }

    /// A hard cap on each worker's address space (`RLIMIT_AS`): an allocation past it
    /// fails in the worker, which ends that task ([`TaskError::WorkerDied`](crate::TaskError::WorkerDied)
    /// with a hint) instead of exhausting the machine. Leave room for the program itself
    /// (a few hundred MiB of address space is typical).
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::builder().processes(1).max_address_space(4 << 30).build()?;
    /// assert_eq!(pool.apply(square, 3)?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_address_space(mut self, bytes: u64) -> Self {
        self.address_space = Some(bytes);
        self
    }

    /// A default timeout for every task; see [`TaskOptions::timeout`](crate::TaskOptions::timeout).
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::builder().processes(1).timeout(Duration::from_secs(60)).build()?;
    /// assert_eq!(pool.apply(square, 3)?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A soft time limit for every task (billiard's `soft_time_limit`): `soft` after its
    /// worker takes it, a task sees [`task::cancelled`](crate::task::cancelled) turn true
    /// (and [`task::soft_deadline`](crate::task::soft_deadline) says when that is), so it
    /// can stop cleanly and return what it has; its value counts as usual. At the
    /// [`timeout`](PoolBuilder::timeout), if it has not returned, its worker is killed.
    /// Must be shorter than the pool's timeout ([`PoolError::Invalid`] otherwise). Not
    /// carried to a cluster's workers.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::task;
    ///
    /// fn patient(_: ()) -> bool {
    ///     while !task::cancelled() {
    ///         std::thread::sleep(Duration::from_millis(1));
    ///     }
    ///     task::deadline().is_some_and(|d| d > std::time::Instant::now()) // still before the kill
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder()
    ///     .processes(1)
    ///     .soft_timeout(Duration::from_millis(20))
    ///     .timeout(Duration::from_secs(60))
    ///     .build()?;
    /// assert!(pool.apply(patient, ())?);
    /// assert!(multiproc::Pool::builder().soft_timeout(Duration::from_secs(2)).timeout(Duration::from_secs(1)).build().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn soft_timeout(mut self, soft: Duration) -> Self {
        self.soft_timeout = Some(soft);
        self
    }

    /// Whether a task killed for its timeout counts as a retriable failure, like a task
    /// whose worker died (default `false`: a timeout is final, as in pebble and billiard,
    /// because a task that hung once usually hangs again and each try costs the whole
    /// timeout). With `true`, such a task runs again, alone on a fresh worker, until its
    /// [`retries`](PoolBuilder::retries) are spent, then fails with
    /// [`TaskError::Timeout`](crate::TaskError::Timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// fn quick(x: u64) -> u64 { x + 1 }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder()
    ///     .processes(1)
    ///     .timeout(Duration::from_secs(60))
    ///     .retries(2)
    ///     .retry_timeouts(true)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.apply(quick, 1).unwrap(), 2);
    /// ```
    pub fn retry_timeouts(mut self, yes: bool) -> Self {
        self.retry_timeouts = yes;
        self
    }

    /// Default retries for every task whose worker dies; see
    /// [`TaskOptions::retries`](crate::TaskOptions::retries).
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::builder().processes(1).retries(2).build()?;
    /// assert_eq!(pool.apply(square, 3)?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// How long a worker may take to start (default 30 s).
    ///
    /// ```
    /// multiproc::init();
    /// use std::time::Duration;
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::builder().processes(1).start_timeout(Duration::from_secs(30)).build()?;
    /// assert_eq!(pool.apply(square, 3)?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Runs workers from another executable of the same build (default: this program).
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::builder().processes(1).executable(std::env::current_exe()?).build()?;
    /// assert_eq!(pool.apply(square, 3)?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.executable = Some(path.into());
        self
    }

    /// Starts the workers (all at once, each in its own thread) and the pool's driver
    /// thread, and returns as soon as one worker has answered its handshake: the others
    /// join as they come up (Python's `Pool()` returns before any has). With an
    /// initializer it waits for every worker to have run it.
    ///
    /// Fails if a worker cannot start before one has (a missing or foreign executable,
    /// no processes left) or if the initializer fails in one; no process is left behind
    /// then. A worker that fails later is replaced, as after a crash.
    ///
    /// ```
    /// multiproc::init();
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = multiproc::Pool::builder().processes(1).build()?;
    /// assert_eq!(pool.apply(square, 3)?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<Pool, PoolError> {
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        if processes == 0 {
            return Err(PoolError::Invalid("processes must be at least 1".into()));
        }
        if let (Some(soft), Some(hard)) = (self.soft_timeout, self.timeout)
            && soft >= hard
        {
            return Err(PoolError::Invalid(format!(
                "soft_timeout ({soft:?}) must be shorter than timeout ({hard:?}): the task is told to stop before it is killed"
            )));
        }
        if self.max_tasks == Some(0) {
            return Err(PoolError::Invalid("max_tasks_per_child must be at least 1 (Python refuses 0 too)".into()));
        }
        let initializer = match self.initializer {
            None => None,
            Some((t, f, Ok(arg))) => Some((t, f, arg)),
            Some((_, _, Err(e))) => {
                return Err(PoolError::Invalid(format!("the initializer's argument does not serialize: {e}")));
            }
        };
        let spec = ChildSpec {
            name: String::new(),
            identity: spawn::identity().identity.clone(),
            daemon: true,
            executable: self.executable,
            start_timeout: self.start_timeout,
            max_frame: self.max_frame,
            isolation: self.isolation,
            huge_pages: false,
        };
        let fork_server = fork_server_for(self.start_method, self.preload, self.shared_fork_server, &spec)?;
        let cfg = WorkerConfig {
            processes,
            max_tasks: self.max_tasks,
            max_memory: self.max_memory,
            address_space: self.address_space,
            initializer,
            initializer_name: self.initializer_name,
            retry_timeouts: self.retry_timeouts,
            soft_timeout: self.soft_timeout,
            spec,
            fork_server,
        };
        let engine = Engine::Local(Local::start(cfg)?);
        let shared = Shared { default_timeout: self.timeout, default_retries: self.retries, engine };
        Ok(Pool { shared: Arc::new(shared), processes })
    }
}

/// The fork server a pool's workers come from: `shared`, or one of its own when the start
/// method (`method`, else `MULTIPROC_START_METHOD`) says so; none for exec'd workers.
fn fork_server_for(
    method: Option<crate::StartMethod>,
    preload: Option<fn()>,
    shared: Option<super::ForkServer>,
    spec: &ChildSpec,
) -> Result<Option<Arc<ForkServer>>, PoolError> {
    use crate::StartMethod::{Exec, ForkServer as Forks};
    if let Some(server) = shared {
        return match (method, preload) {
            (Some(Exec), _) => Err(PoolError::Invalid(
                "fork_server(..) and start_method(StartMethod::Exec) contradict each other: choose one".into(),
            )),
            _ if spec.executable.is_some() => Err(PoolError::Invalid(
                "a pool with a shared fork_server(..) forks the server's program: executable(..) does not apply to it".into(),
            )),
            (_, Some(_)) => Err(PoolError::Invalid(
                "a pool with a shared fork_server(..) cannot have a preload of its own: give it to ForkServer::with_preload".into(),
            )),
            _ => Ok(Some(server.inner)),
        };
    }
    let method = match method {
        Some(m) => m,
        None => super::options::StartMethod::from_env().map_err(PoolError::Invalid)?,
    };
    match (method, preload) {
        (Forks, preload) => Ok(Some(Arc::new(ForkServer::start(spec, preload)?))),
        (Exec, Some(_)) => Err(PoolError::Invalid(
            "a preload needs start_method(StartMethod::ForkServer): exec'd workers share nothing".into(),
        )),
        (Exec, None) => Ok(None),
    }
}
