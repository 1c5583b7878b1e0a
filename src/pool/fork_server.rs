//! A fork server that several pools share: one template, one preload, started once.
//!
//! A pool built with `StartMethod::ForkServer` alone starts a template of its own (an
//! exec, the preload, a handshake: milliseconds before its first worker). A program that
//! builds pools again and again, or wants its first pool's workers at fork speed, starts
//! a [`ForkServer`] once and hands it to each pool ([`PoolBuilder::fork_server`]), as
//! Python's `forkserver` is one process per program. The template lives while a handle
//! or a pool that uses it does.
//!
//! [`PoolBuilder::fork_server`]: crate::PoolBuilder::fork_server

use std::sync::Arc;

use crate::pool::PoolError;
use crate::spawn::{self, ChildSpec, forkserver};

/// A fork-server template that pools share; cloning it shares the same template.
///
/// Its workers are forked as the pools' own children, with each pool's containment,
/// limits and handshake, exactly as with a pool's own template (see
/// [`StartMethod::ForkServer`](crate::StartMethod)). The template is killed when the last
/// handle and the last pool using it are gone; one that dies is started again at the
/// next fork. Where workers are contained by cgroups ([`Contain::Auto`](crate::Contain)
/// resolved when the server starts, `MULTIPROC_CONTAIN` included), the server makes one
/// cgroup subtree for every pool's workers, with a default pool's worth of worker cgroups
/// made ahead (a new pool's first worker does not wait for a `mkdir`); one guard process
/// watches that subtree for the case of this process being SIGKILLed (no worker starts a
/// guard of its own), and a thread of this process (`multiproc-guard-keeper`) starts
/// another at once if that guard is killed. The subtree goes with the server.
///
/// ```
/// use std::sync::OnceLock;
/// static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
/// fn load() { TABLE.get_or_init(|| (0..1000).map(|i| i * i).collect()); }
/// fn lookup(i: usize) -> u64 { TABLE.get().map_or(0, |t| t[i]) }
///
/// multiproc::init();
/// let server = multiproc::ForkServer::with_preload(load)?;
/// let a = multiproc::Pool::builder().processes(1).fork_server(&server).build()?;
/// let b = multiproc::Pool::builder().processes(1).fork_server(&server).build()?;
/// assert_eq!(a.apply(lookup, 12)?, 144);
/// assert_eq!(b.apply(lookup, 3)?, 9);
/// assert_eq!(a.stats().fork_server_pid, server.pid());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ForkServer {
    pub(crate) inner: Arc<forkserver::ForkServer>,
}

impl ForkServer {
    /// Starts a template with nothing preloaded.
    ///
    /// ```
    /// multiproc::init();
    /// let server = multiproc::ForkServer::start()?;
    /// assert!(server.pid().is_some());
    /// # Ok::<(), multiproc::PoolError>(())
    /// ```
    pub fn start() -> Result<ForkServer, PoolError> {
        Self::started(None)
    }

    /// Starts a template that runs `preload` first: what it loads into statics is in
    /// every worker of every pool that uses this server, shared copy-on-write. A preload
    /// that panics is an error here (see [`PoolBuilder::preload`](crate::PoolBuilder::preload)
    /// for what a preload may do).
    ///
    /// ```
    /// fn bad() { panic!("no table today") }
    /// multiproc::init();
    /// let err = multiproc::ForkServer::with_preload(bad).unwrap_err();
    /// assert!(err.to_string().contains("no table today"));
    /// ```
    pub fn with_preload(preload: fn()) -> Result<ForkServer, PoolError> {
        Self::started(Some(preload))
    }

    fn started(preload: Option<fn()>) -> Result<ForkServer, PoolError> {
        let spec = ChildSpec {
            name: String::new(),
            identity: spawn::identity().identity.clone(),
            daemon: true,
            executable: None,
            start_timeout: spawn::DEFAULT_START_TIMEOUT,
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
            // The default containment (resolved now): where it is a cgroup, the pools'
            // workers have their cgroups under one subtree that one guard watches, as with
            // a pool's own template, rather than a guard forked by each worker.
            isolation: crate::isolation::Policy::default(),
            huge_pages: false,
        };
        let inner = forkserver::ForkServer::start(&spec, preload)?;
        // A default pool's workers' cgroups, made now rather than in its first worker's way.
        inner.stock_cgroups(crate::cpu_count());
        Ok(ForkServer { inner: Arc::new(inner) })
    }

    /// The running template's pid (`None` between a template's death and its restart).
    ///
    /// ```
    /// multiproc::init();
    /// let server = multiproc::ForkServer::start()?;
    /// let pid = server.pid().unwrap();
    /// assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    /// # Ok::<(), multiproc::PoolError>(())
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.inner.template_pid()
    }

    /// Templates started so far: 1, plus one per template that died and was replaced.
    ///
    /// ```
    /// multiproc::init();
    /// assert_eq!(multiproc::ForkServer::start()?.templates_started(), 1);
    /// # Ok::<(), multiproc::PoolError>(())
    /// ```
    pub fn templates_started(&self) -> u64 {
        self.inner.templates_started()
    }
}
