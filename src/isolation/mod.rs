//! Isolation policies for children (pool workers and `Process` children): containment of
//! their descendants, and resource limits.
//!
//! # Containment
//!
//! See [`Contain`]: the mechanisms, why, and their limits.
//!
//! # Limits
//!
//! [`Limits`]: CPU time, open files, file size, processes, niceness and CPU affinity,
//! set in the child before anything else of the user's runs in it.

mod leftovers;
#[cfg(feature = "sandbox")]
pub(crate) mod sandbox;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sys;
use crate::sys::contain::GuardAction;
use crate::sys::limits::Limit;

/// How a child's descendants should be contained: a request, for
/// [`PoolBuilder::contain`](crate::PoolBuilder::contain) and [`Process::contain`](crate::Process::contain).
///
/// A task may fork a child, double-fork a daemon, or start a child that calls `setsid`;
/// without containment that process is re-parented to init and outlives the worker, the
/// pool and the program. Two mechanisms, chosen per child:
///
/// - **cgroup v2 subtree** ([`Containment::Cgroup`], the strongest, used whenever the
///   hierarchy is writable): the parent creates one cgroup per child under its own and
///   creates the child *inside* it (`clone3` with `CLONE_INTO_CGROUP`, so it is contained
///   from its first instruction, before any initializer or task), and ends it with
///   `cgroup.kill`, which SIGKILLs every process of the subtree at once: no fork race, no
///   escape by `setsid`, double fork or a new process group, since cgroup membership is
///   inherited and cannot be left without write access to an ancestor. When the child
///   ends (the parent sees it exit, before reaping it) the parent removes its cgroup,
///   which the kernel allows only when nothing is left in it, so that most often one
///   `rmdir` both proves and ends it; if something is left, the kill. The kill also
///   happens when the parent kills the child (a timeout, `terminate`). So when a pool's
///   `join` or a `Process`'s `join` returns, the cgroup is gone or killed. For an owner
///   that is SIGKILLed — it cannot clean up — each child starts a tiny **guard** before
///   any user code runs: created inside the parent cgroup (never in the child's), in a
///   session of its own, keeping no descriptor but pidfds of the child and of the owner,
///   it waits on the child's and, when the child ends for any reason (its parent-death
///   signal included), kills and removes the cgroup, unless the owner, still alive,
///   removed it within 20 ms (the owner sees the end at the same moment, and two doing it
///   at once only wait on each other for the kernel's cgroup lock). The guard runs in the
///   idle scheduling class, so that its waking never preempts the owner's `join`. It is
///   a "quiet" child (it sends no SIGCHLD, and a task's `wait()` does not see it) and
///   nothing waits for it to start. What that leaves: an owner killed while a child is
///   still starting, after its cgroup was made and before its guard runs (about a
///   millisecond: a pool's second worker, say, when the owner dies right after `build`),
///   leaves that child's cgroup behind, empty (the child itself dies with its owner, and
///   it ran no user code that could have started anything); the next process of the
///   machine to use cgroup containment under the same cgroup removes it, as it removes
///   every empty cgroup of an owner that no longer exists, the first time it looks there. A pool's workers forked by a fork server
///   ([`StartMethod::ForkServer`](crate::StartMethod)) share one guard instead: their
///   cgroups are made under one cgroup of the server's, and the template starts, once,
///   a guard that waits for the owner to die (or to close a pipe when it drops the
///   server), then for the template to be gone, and kills and removes that whole
///   subtree; a replacement worker then forks no guard of its own. That one guard runs
///   as the owner's user, so a task may SIGKILL it: the owner holds its pidfd, and a
///   thread of the owner's has the template (a new one if the template was killed too)
///   start another as soon as it dies, whether or not a worker is being forked; a fork
///   also checks the guard first, so none is forked into an unwatched subtree. An owner
///   SIGKILLed after that leaves nothing; only an owner SIGKILLed in the moment between
///   the guard's death and its replacement's start (a few milliseconds on a loaded
///   two-core machine, a template killed with it included) leaves the subtree to be
///   killed by nobody — as a task that kills the guard and then the owner itself does.
///   A guard *stopped* (SIGSTOP) by a task is not dead and is not replaced: it does
///   nothing when the owner dies. There a worker's
///   cgroup found empty when it ended (and never killed) is kept for the next worker
///   instead of removed; the subtree is removed with the server.
///
///   Why created inside rather than moved in: moving a running process into a cgroup
///   (writing `cgroup.procs`) makes the kernel wait for an RCU grace period whenever no
///   other move happened just before — about 10 ms, which was most of a pool's start.
///   Where `clone3` is refused (some container runtimes filter it) or on an architecture
///   other than x86_64, the child is started as usual and moved before its handshake, and
///   its guard moves itself out of the child's cgroup before the child goes on: as
///   strong, only slower to start.
/// - **process tree** ([`Containment::ProcessTree`], the fallback where no cgroup can be
///   written, e.g. an unprivileged user outside a delegated subtree): the child leads a
///   new process group and is a child subreaper (`PR_SET_CHILD_SUBREAPER`), so orphaned
///   descendants are re-parented to it and stay linked to it. When it exits by itself it
///   kills its descendants first; when its parent kills it, the parent stops it, walks its
///   descendants through `/proc` (stopping each: a stopped process cannot fork) and kills
///   them all; when it dies otherwise, the parent and its guard kill its process group
///   while its zombie still holds the group's number. For an owner that is SIGKILLed, the
///   child's parent-death signal is SIGSTOP instead of SIGKILL: it stops with its tree
///   intact, and its guard, which watches the owner too, walks and kills that tree, then
///   the child (SIGHUP is blocked in the child: the kernel sends it to an orphaned group
///   with a stopped member). **Limits**: a descendant that left the process group
///   (`setsid`) escapes when the child dies by a crash of its own (the tree is unlinked
///   by then); the walk reads `/proc`, which a Landlock sandbox hides from the child (its
///   parent and guard still do theirs); and if the guard itself is killed, a child whose
///   owner died stays stopped.
///
/// The mechanism in effect is never chosen silently: it is in
/// [`PoolStats::containment`](crate::PoolStats) and [`Process::containment`](crate::Process::containment).
/// `MULTIPROC_CONTAIN=cgroup|process-tree|off` in the environment overrides
/// [`Contain::Auto`]. A pid namespace would be stronger still for the owner-SIGKILL case
/// but needs privilege or user namespaces and makes the first process a task forks its
/// init (whose death kills its siblings), so it is not used.
///
/// ```
/// use multiproc::{Contain, Containment, Process};
///
/// fn work(_: ()) {}
///
/// multiproc::init();
/// // Python's behaviour: what the child starts may outlive it.
/// let mut p = Process::new(work, ()).contain(Contain::Off);
/// p.start()?;
/// p.join()?;
/// assert_eq!(p.containment(), Some(Containment::Off));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Contain {
    /// A cgroup where the hierarchy is writable, else the process tree (the default;
    /// `MULTIPROC_CONTAIN` in the environment may choose instead).
    #[default]
    Auto,
    /// A cgroup v2 subtree, or starting the child fails with the reason.
    Cgroup,
    /// Process group and child subreaper, even where a cgroup could be used.
    ProcessTree,
    /// No containment: what a child starts may outlive it, as in Python.
    Off,
}

/// The containment in effect for a child.
///
/// ```
/// use multiproc::{Contain, Containment, Pool};
///
/// multiproc::init();
/// let pool = Pool::builder().processes(1).contain(Contain::Off).build()?;
/// assert_eq!(pool.stats().containment, Containment::Off);
/// println!("workers contained by: {}", pool.stats().containment);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Containment {
    /// Not contained.
    #[default]
    Off,
    /// A process group and a child subreaper; see [`Contain`] for its limits.
    ProcessTree,
    /// A cgroup v2 subtree, killed with `cgroup.kill`.
    Cgroup,
}

impl std::fmt::Display for Containment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Containment::Off => "off",
            Containment::ProcessTree => "process tree (process group + child subreaper)",
            Containment::Cgroup => "cgroup v2 subtree (cgroup.kill)",
        })
    }
}

/// Where new cgroups go (the parent's own cgroup), or why none can be made; probed once.
fn cgroup_base() -> &'static Result<PathBuf, String> {
    static BASE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BASE.get_or_init(|| {
        let mount = sys::contain::cgroup2_mount().ok_or("no cgroup v2 hierarchy is mounted")?;
        let own = sys::contain::own_cgroup().ok_or("this process is in no cgroup v2")?;
        let base = mount.join(own);
        sys::contain::cgroup_writable(&base).map_err(|e| format!("{} is not writable: {e}", base.display()))?;
        leftovers::remove_under(&base);
        Ok(base)
    })
}

/// What `Auto` resolves to: the environment's choice, else the strongest available.
fn resolve(req: Contain) -> Result<Contain, String> {
    if req != Contain::Auto {
        return Ok(req);
    }
    match std::env::var("MULTIPROC_CONTAIN").ok().as_deref() {
        None | Some("") | Some("auto") => {
            Ok(if cgroup_base().is_ok() { Contain::Cgroup } else { Contain::ProcessTree })
        }
        Some("cgroup") => Ok(Contain::Cgroup),
        Some("process-tree") => Ok(Contain::ProcessTree),
        Some("off") => Ok(Contain::Off),
        Some(other) => Err(format!("MULTIPROC_CONTAIN={other:?} is not one of auto, cgroup, process-tree, off")),
    }
}

/// The containment the request `req` gives on this machine now, or why it cannot be had.
pub fn containment_for(req: Contain) -> Result<Containment, String> {
    Ok(match resolve(req)? {
        Contain::Cgroup => {
            cgroup_base().as_ref().map_err(|e| format!("cgroup containment is unavailable: {e}"))?;
            Containment::Cgroup
        }
        Contain::ProcessTree => Containment::ProcessTree,
        Contain::Off | Contain::Auto => Containment::Off,
    })
}

/// Everything a child is isolated by, as its parent asks: a `ChildSpec` field.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policy {
    pub(crate) contain: Contain,
    pub(crate) limits: Limits,
    #[cfg(feature = "sandbox")]
    pub(crate) sandbox: Option<sandbox::Sandbox>,
    /// With cgroup containment: a cgroup that one guard already watches (a fork server's
    /// [`Subtree`]), under which the child's own cgroup is made (or one emptied is used
    /// again); the child then starts no guard of its own.
    pub(crate) guarded_subtree: Option<std::sync::Arc<Subtree>>,
}

impl Policy {
    /// No containment, no limit, no sandbox: a child whose descendants may outlive it.
    pub(crate) fn none() -> Policy {
        Policy { contain: Contain::Off, ..Policy::default() }
    }

    /// Checks the policy before any child starts.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.limits.check()?;
        #[cfg(feature = "sandbox")]
        if let Some(s) = &self.sandbox {
            s.check()?;
        }
        Ok(())
    }
}

/// What a child is told to set up before its handshake reply (it travels in the hello).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ChildIsolation {
    pub(crate) containment: Containment,
    /// The child's cgroup and the parent's (where its guard goes), with `Cgroup`.
    pub(crate) cgroup: Option<(PathBuf, PathBuf)>,
    /// Whether its cgroup is in a subtree a guard watches already: it starts none.
    pub(crate) guarded: bool,
    pub(crate) limits: Limits,
    /// Entered later: by a worker after its initializer, by a `Process` before its target.
    #[cfg(feature = "sandbox")]
    pub(crate) sandbox: Option<sandbox::Sandbox>,
}

/// The parent's side of a contained child: what to kill when it ends.
#[derive(Debug, Default)]
pub(crate) struct Contained {
    pub(crate) containment: Containment,
    cgroup: Option<PathBuf>,
    /// The cgroup's directory, open, for the child to be created in it.
    dir: Option<OwnedFd>,
    /// The guarded subtree the cgroup is in, which takes it back empty for another child.
    subtree: Option<std::sync::Arc<Subtree>>,
    /// Whether the cgroup was killed after the child ended: nothing can be left to kill.
    killed: AtomicBool,
    /// Whether the cgroup is gone (removed empty after the child ended), or was taken back
    /// empty by its subtree for another child: nothing is left of this child's, and the
    /// cgroup must not be touched any more.
    removed: AtomicBool,
    /// Whether `cgroup.kill` was ever written: such a cgroup is never used again (some
    /// kernels kill every process later created inside a cgroup that was killed once,
    /// with `CLONE_INTO_CGROUP`).
    kill_written: AtomicBool,
}

/// What is left to do with a cgroup when its child's handle goes, after what was done
/// when the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupTeardown {
    /// Removed already (empty when the child ended): nothing.
    Nothing,
    /// Killed when the child ended: remove it once the killed processes are gone.
    Remove,
    /// Neither (the child's end was never seen): kill it, then remove it.
    KillAndRemove,
}

impl CgroupTeardown {
    fn after(removed: bool, killed: bool) -> CgroupTeardown {
        match (removed, killed) {
            (true, _) => CgroupTeardown::Nothing,
            (false, true) => CgroupTeardown::Remove,
            (false, false) => CgroupTeardown::KillAndRemove,
        }
    }
}

static NEXT_CGROUP: AtomicU64 = AtomicU64::new(1);

/// Where a fork server serving children contained as `policy` says keeps their cgroups:
/// a new cgroup's path under this process's own (made by the template, watched by one
/// guard: `sys::contain::spawn_subtree_guard`), or `None` when they are not contained by
/// cgroups.
pub(crate) fn subtree_for(policy: &Policy) -> Option<PathBuf> {
    if containment_for(policy.contain) != Ok(Containment::Cgroup) {
        return None;
    }
    let base = cgroup_base().as_ref().ok()?;
    let n = NEXT_CGROUP.fetch_add(1, Ordering::Relaxed);
    Some(base.join(format!("multiproc-{}-{n}-forks", sys::proc::getpid())))
}

/// A cgroup whose whole subtree one guard watches (a fork server's): its children's
/// cgroups are made in it, and a child's cgroup found empty when the child ended is kept
/// for the next child instead of removed and made again (two operations under the
/// kernel's cgroup lock, each creating or removing its control files).
#[derive(Debug)]
pub(crate) struct Subtree {
    dir: PathBuf,
    /// Children's cgroups, empty, to be used again.
    free: std::sync::Mutex<Vec<PathBuf>>,
}

/// At most this many emptied cgroups are kept for reuse; more are removed.
const FREE_CGROUPS: usize = 16;

impl Subtree {
    pub(crate) fn new(dir: PathBuf) -> Subtree {
        Subtree { dir, free: Default::default() }
    }

    /// The subtree's own cgroup.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn free(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty cgroup for a new child: one kept, else a new one.
    fn take(&self) -> Result<PathBuf, String> {
        match self.free().pop() {
            Some(dir) => Ok(dir),
            None => self.make(),
        }
    }

    /// A new cgroup for a child in the subtree.
    fn make(&self) -> Result<PathBuf, String> {
        let n = NEXT_CGROUP.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(format!("w{n}"));
        sys::contain::cgroup_create(&dir).map_err(|e| format!("cannot create cgroup {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// Makes cgroups for up to `count` children ahead of them (at most as many as are kept
    /// for reuse), so that a child's start does not wait for a `mkdir`; stops at the first
    /// that cannot be made (a child's start then makes its own, and says why).
    pub(crate) fn stock(&self, count: usize) {
        let have = self.free().len();
        for _ in have..count.min(FREE_CGROUPS) {
            let Ok(dir) = self.make() else { return };
            self.free().push(dir);
        }
    }

    /// The child of `dir` has ended: keeps `dir` for another child if nothing is left in
    /// it (nothing can enter it any more: only a process in it, or its owner, could put
    /// one there). Whether it was kept.
    fn keep(&self, dir: &Path) -> bool {
        if sys::contain::cgroup_populated(dir) {
            return false;
        }
        let mut free = self.free();
        if free.len() >= FREE_CGROUPS {
            return false;
        }
        free.push(dir.to_path_buf());
        true
    }

    /// Removes the subtree, with every cgroup in it (killing what is left, which is
    /// nothing once every child has ended).
    pub(crate) fn remove(&self) {
        for dir in self.free().drain(..) {
            let _ = sys::contain::cgroup_remove_if_empty(&dir);
        }
        if !sys::contain::cgroup_remove_if_empty(&self.dir).unwrap_or(false) {
            let _ = sys::contain::cgroup_kill(&self.dir);
            let _ = sys::contain::cgroup_remove(&self.dir, Duration::from_millis(50));
        }
    }
}

/// Prepares the containment `req` for a child about to start: makes its cgroup if any.
pub(crate) fn prepare(policy: &Policy) -> Result<(ChildIsolation, Contained), String> {
    let containment = containment_for(policy.contain)?;
    let mut cgroup = None;
    let mut open = None;
    if containment == Containment::Cgroup {
        let base = cgroup_base().as_ref().map_err(|e| e.clone())?;
        let dir = match &policy.guarded_subtree {
            Some(subtree) => subtree.take()?,
            None => {
                let n = NEXT_CGROUP.fetch_add(1, Ordering::Relaxed);
                let dir = base.join(format!("multiproc-{}-{n}", sys::proc::getpid()));
                sys::contain::cgroup_create(&dir)
                    .map_err(|e| format!("cannot create cgroup {}: {e}", dir.display()))?;
                dir
            }
        };
        // Without the open directory the child is started, then moved: slower, as sound.
        open = sys::contain::cgroup_open(&dir).ok();
        cgroup = Some((dir, base.clone()));
    }
    let child = ChildIsolation {
        containment,
        cgroup: cgroup.clone(),
        guarded: cgroup.is_some() && policy.guarded_subtree.is_some(),
        limits: policy.limits.clone(),
        #[cfg(feature = "sandbox")]
        sandbox: policy.sandbox.clone(),
    };
    let contained = Contained {
        containment,
        subtree: policy.guarded_subtree.clone().filter(|_| cgroup.is_some()),
        cgroup: cgroup.map(|(d, _)| d),
        dir: open,
        killed: AtomicBool::new(false),
        removed: AtomicBool::new(false),
        kill_written: AtomicBool::new(false),
    };
    Ok((child, contained))
}

impl Contained {
    /// The cgroup to create the child in, open, if it has one.
    pub(crate) fn cgroup_dir(&self) -> Option<BorrowedFd<'_>> {
        self.dir.as_ref().map(AsFd::as_fd)
    }

    /// Puts the just-started child `pid` in its cgroup, unless it was created there
    /// (`in_cgroup`); the open directory is no longer needed either way.
    pub(crate) fn adopt(&mut self, pid: u32, in_cgroup: bool) -> std::io::Result<()> {
        self.dir = None;
        match &self.cgroup {
            Some(dir) if !in_cgroup => sys::contain::cgroup_add(dir, pid),
            _ => Ok(()),
        }
    }

    /// The child `pid` has ended and is not reaped yet: kill what it left behind.
    pub(crate) fn ended(&self, pid: u32) {
        if self.removed.load(Ordering::Relaxed) {
            // Seen already: the cgroup is gone, or serves another child now.
            return;
        }
        match (self.containment, &self.cgroup) {
            // Nothing left, in a subtree that keeps it for the next child: no removal.
            (Containment::Cgroup, Some(dir))
                if !self.kill_written.load(Ordering::Relaxed) && self.subtree.as_ref().is_some_and(|s| s.keep(dir)) =>
            {
                self.removed.store(true, Ordering::Relaxed);
            }
            // Most often the child left nothing: the kernel removes only an empty cgroup,
            // so a removal that succeeds is the proof, and ends it in one step (one
            // operation under the kernel's cgroup lock instead of a kill and a removal).
            (Containment::Cgroup, Some(dir)) if sys::contain::cgroup_remove_if_empty(dir).unwrap_or(false) => {
                self.removed.store(true, Ordering::Relaxed);
            }
            // Something is left. Once the child has ended, nothing can enter its cgroup any
            // more: one kill empties it for good.
            (Containment::Cgroup, Some(dir)) if sys::contain::cgroup_kill(dir).is_ok() => {
                self.killed.store(true, Ordering::Relaxed);
            }
            // Its zombie still holds the group's number: no other group can have it.
            (Containment::ProcessTree, _) => {
                let _ = sys::contain::kill_group(pid, libc::SIGKILL);
            }
            _ => {}
        }
    }

    /// Kills the running child `pid` with its whole tree.
    pub(crate) fn kill(&self, pid: u32) {
        if self.removed.load(Ordering::Relaxed) {
            // The child has ended and its cgroup is gone, or was taken back for another
            // child (which a kill of it would take).
            return;
        }
        match (self.containment, &self.cgroup) {
            (Containment::Cgroup, Some(dir)) => {
                self.kill_written.store(true, Ordering::Relaxed);
                let _ = sys::contain::cgroup_kill(dir);
            }
            (Containment::ProcessTree, _) => sys::contain::kill_tree(pid),
            _ => {}
        }
    }
}

impl Drop for Contained {
    fn drop(&mut self) {
        let Some(dir) = &self.cgroup else { return };
        let teardown = CgroupTeardown::after(self.removed.load(Ordering::Relaxed), self.killed.load(Ordering::Relaxed));
        if teardown == CgroupTeardown::KillAndRemove {
            let _ = sys::contain::cgroup_kill(dir);
        }
        if teardown != CgroupTeardown::Nothing {
            // The processes just killed may take a moment to go; the guard removes the
            // cgroup too, once it is empty.
            let _ = sys::contain::cgroup_remove(dir, Duration::from_millis(50));
        }
    }
}

/// In the child, before its handshake reply: containment, then limits. `owner` is the
/// parent's pid.
pub(crate) fn apply_in_child(setup: &ChildIsolation, owner: u32) -> Result<(), String> {
    match setup.containment {
        Containment::Off => {}
        Containment::Cgroup => {
            let (dir, parent) = setup.cgroup.clone().ok_or("cgroup containment without a cgroup")?;
            sys::contain::set_helpers_cgroup(&parent);
            // In a guarded subtree (a fork server's), that subtree's guard covers this
            // cgroup too: one process per template instead of one per child.
            if !setup.guarded {
                single_threaded()?;
                sys::contain::spawn_guard(GuardAction::Cgroup { dir, parent, owner })
                    .map_err(|e| format!("cannot start the containment guard: {e}"))?;
            }
        }
        Containment::ProcessTree => {
            single_threaded()?;
            sys::contain::own_process_group().map_err(|e| format!("cannot start a process group: {e}"))?;
            // The guard is forked before this process becomes a subreaper, so it is not
            // re-parented to it.
            sys::contain::spawn_guard(GuardAction::Tree { pid: sys::proc::getpid(), owner })
                .map_err(|e| format!("cannot start the containment guard: {e}"))?;
            sys::contain::set_child_subreaper().map_err(|e| format!("cannot become a child subreaper: {e}"))?;
            // If the owner dies, this process stops instead of dying, its tree intact: its
            // guard sees the owner go, kills the tree (setsid'd descendants too: they are
            // still linked to it), then it. The owner's death orphans this process's
            // group, and the kernel sends an orphaned group with a stopped member SIGHUP
            // (then SIGCONT): blocked, so that it cannot end this process before its tree.
            sys::contain::block_signal(libc::SIGHUP).map_err(|e| format!("cannot block SIGHUP: {e}"))?;
            sys::contain::set_parent_death_signal(libc::SIGSTOP)
                .map_err(|e| format!("cannot set the parent-death signal: {e}"))?;
            sys::proc::kill_descendants_at_exit();
        }
    }
    #[cfg(feature = "sandbox")]
    sandbox::keep(setup.sandbox.clone());
    setup.limits.apply()
}

fn single_threaded() -> Result<(), String> {
    match sys::contain::threads() {
        1 => Ok(()),
        n => Err(format!(
            "containment needs the child to be single-threaded when it starts, and it has {n} threads \
             (start no thread before multiproc::init())"
        )),
    }
}

/// Resource limits for a child (a pool's workers, a `Process`), set in the child before its
/// initializer or target runs. Every limit is off unless set.
///
/// ```
/// use std::time::Duration;
/// let limits = multiproc::Limits::new().cpu_time(Duration::from_secs(2)).open_files(64).nice(5);
/// # let _ = limits;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    cpu_time: Option<u64>,
    open_files: Option<u64>,
    file_size: Option<u64>,
    processes: Option<u64>,
    nice: Option<i32>,
    affinity: Option<Vec<usize>>,
    one_cpu_each: Option<Vec<usize>>,
}

impl Limits {
    /// No limit.
    ///
    /// ```
    /// let l = multiproc::Limits::new().open_files(256).nice(5);
    /// assert_eq!(l.cpu_seconds(), None);
    /// ```
    pub fn new() -> Limits {
        Limits::default()
    }

    /// CPU time of the whole child (`RLIMIT_CPU`, whole seconds, rounded up): past it the
    /// child gets SIGXCPU and dies, and its task fails naming the limit.
    ///
    /// ```
    /// use std::time::Duration;
    /// let l = multiproc::Limits::new().cpu_time(Duration::from_secs(10));
    /// assert_eq!(l.cpu_seconds(), Some(10));
    /// ```
    pub fn cpu_time(mut self, t: Duration) -> Limits {
        self.cpu_time = Some(t.as_secs() + u64::from(t.subsec_nanos() > 0));
        self
    }

    /// The most descriptors the child may have open (`RLIMIT_NOFILE`): past it `open`
    /// fails with `EMFILE` ("Too many open files") in the task. Leave room for the
    /// child's own (a dozen).
    ///
    /// ```
    /// multiproc::init();
    /// fn count_open(_: ()) {}
    ///
    /// let limits = multiproc::Limits::new().open_files(64);
    /// let mut p = multiproc::Process::new(count_open, ()).limits(limits);
    /// p.start()?;
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_files(mut self, n: u64) -> Limits {
        self.open_files = Some(n);
        self
    }

    /// The largest file the child may write (`RLIMIT_FSIZE`, bytes): a write past it
    /// fails with `EFBIG` in the task (SIGXFSZ is ignored in children so limited).
    ///
    /// ```
    /// let l = multiproc::Limits::new().file_size(1 << 20);
    /// assert_eq!(l.file_size_bytes(), Some(1 << 20));
    /// ```
    pub fn file_size(mut self, bytes: u64) -> Limits {
        self.file_size = Some(bytes);
        self
    }

    /// The most processes the child's *user* may have (`RLIMIT_NPROC`): the kernel counts
    /// every process of that user, not the child's descendants, so set it above what the
    /// user already runs; `fork` past it fails with `EAGAIN`. Root ignores it. Against
    /// fork bombs, containment kills what was started anyway when the task's worker ends.
    ///
    /// ```
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder().processes(1).limits(multiproc::Limits::new().processes(4096)).build()?;
    /// drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn processes(mut self, n: u64) -> Limits {
        self.processes = Some(n);
        self
    }

    /// The child's niceness, -20 (favoured) to 19 (nicest); below the parent's needs privilege.
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let mut p = multiproc::Process::new(work, ()).limits(multiproc::Limits::new().nice(10));
    /// p.start()?;
    /// p.join()?;
    /// assert_eq!(p.exitcode(), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn nice(mut self, nice: i32) -> Limits {
        self.nice = Some(nice);
        self
    }

    /// Pins the child to these CPUs (numbered from 0).
    ///
    /// ```
    /// multiproc::init();
    /// let l = multiproc::Limits::new().cpu_affinity([0]); // every worker on CPU 0
    /// let pool = multiproc::Pool::builder().processes(1).limits(l).build()?;
    /// drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cpu_affinity(mut self, cpus: impl IntoIterator<Item = usize>) -> Limits {
        self.affinity = Some(cpus.into_iter().collect());
        self
    }

    /// Pins each pool worker to one of `cpus`, in turn (worker 1 to the first, worker 2
    /// to the second, …, replacements continuing the round); a `Process` to the first.
    ///
    /// ```
    /// multiproc::init();
    /// let cpus = 0..multiproc::cpu_count();
    /// let pool = multiproc::Pool::builder().processes(2).limits(multiproc::Limits::new().one_cpu_each(cpus)).build()?;
    /// drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn one_cpu_each(mut self, cpus: impl IntoIterator<Item = usize>) -> Limits {
        self.one_cpu_each = Some(cpus.into_iter().collect());
        self
    }

    /// These limits for the `n`th child (from 1): [`one_cpu_each`](Limits::one_cpu_each)
    /// becomes that child's CPU affinity.
    pub(crate) fn for_child(&self, n: u32) -> Limits {
        let mut l = self.clone();
        if let Some(cpus) = l.one_cpu_each.take()
            && !cpus.is_empty()
        {
            l.affinity = Some(vec![cpus[(n.max(1) as usize - 1) % cpus.len()]]);
        }
        l
    }

    /// The CPU time limit in seconds, if any.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(multiproc::Limits::new().cpu_time(Duration::from_secs(2)).cpu_seconds(), Some(2));
    /// ```
    pub fn cpu_seconds(&self) -> Option<u64> {
        self.cpu_time
    }

    /// The file size limit in bytes, if any.
    ///
    /// ```
    /// assert_eq!(multiproc::Limits::new().file_size_bytes(), None);
    /// ```
    pub fn file_size_bytes(&self) -> Option<u64> {
        self.file_size
    }

    /// A description of the limit that ended a child limited so, dying by signal `sig`:
    /// the hint a task error carries ("CPU time limit (RLIMIT_CPU) after 2 s").
    ///
    /// ```
    /// use std::time::Duration;
    /// let l = multiproc::Limits::new().cpu_time(Duration::from_secs(1));
    /// assert!(l.hint_for_signal(24).is_some()); // SIGXCPU: the CPU-time limit
    /// assert!(l.hint_for_signal(9).is_none());
    /// ```
    pub fn hint_for_signal(&self, sig: i32) -> Option<String> {
        match sig {
            libc::SIGXCPU => Some(match self.cpu_time {
                Some(s) => format!("CPU time limit (RLIMIT_CPU) after {s} s"),
                None => "CPU time limit (RLIMIT_CPU)".to_string(),
            }),
            libc::SIGXFSZ => Some(match self.file_size {
                Some(b) => format!("file size limit (RLIMIT_FSIZE) of {b} bytes"),
                None => "file size limit (RLIMIT_FSIZE)".to_string(),
            }),
            _ => None,
        }
    }

    /// Checks the values before any child starts.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(n) = self.nice
            && !(-20..=19).contains(&n)
        {
            return Err(format!("nice must be between -20 and 19, not {n}"));
        }
        if self.affinity.as_ref().is_some_and(Vec::is_empty) {
            return Err("cpu_affinity needs at least one CPU".into());
        }
        if self.one_cpu_each.as_ref().is_some_and(Vec::is_empty) {
            return Err("one_cpu_each needs at least one CPU".into());
        }
        if self.cpu_time == Some(0) {
            return Err("cpu_time must be at least 1 s".into());
        }
        Ok(())
    }

    fn apply(&self) -> Result<(), String> {
        let set = |what: &str, limit: Limit, soft: u64, hard: u64| {
            sys::limits::set(limit, soft, hard).map_err(|e| format!("cannot set the {what} limit: {e}"))
        };
        if let Some(s) = self.cpu_time {
            // SIGXCPU at the soft limit; the hard one, a second later, SIGKILLs a child
            // that ignores it.
            set("CPU time", Limit::CpuSeconds, s, s + 1)?;
        }
        if let Some(n) = self.open_files {
            set("open files", Limit::OpenFiles, n, n)?;
        }
        if let Some(b) = self.file_size {
            sys::proc::ignore_signal(libc::SIGXFSZ);
            set("file size", Limit::FileSize, b, b)?;
        }
        if let Some(n) = self.processes {
            set("processes", Limit::Processes, n, n)?;
        }
        if let Some(n) = self.nice {
            sys::limits::set_nice(n).map_err(|e| format!("cannot set niceness {n}: {e}"))?;
        }
        let own = self.for_child(1);
        if let Some(cpus) = &own.affinity {
            sys::limits::set_affinity(cpus).map_err(|e| format!("cannot pin to CPUs {cpus:?}: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_removed_when_its_child_ended_needs_nothing_more() {
        assert_eq!(CgroupTeardown::after(true, false), CgroupTeardown::Nothing);
        assert_eq!(CgroupTeardown::after(true, true), CgroupTeardown::Nothing);
        assert_eq!(CgroupTeardown::after(false, true), CgroupTeardown::Remove);
        assert_eq!(CgroupTeardown::after(false, false), CgroupTeardown::KillAndRemove);
    }

    #[test]
    fn a_cpu_limit_names_itself_when_its_signal_ends_a_child() {
        let l = Limits::new().cpu_time(Duration::from_millis(1500));
        assert_eq!(l.cpu_seconds(), Some(2));
        assert_eq!(l.hint_for_signal(libc::SIGXCPU).unwrap(), "CPU time limit (RLIMIT_CPU) after 2 s");
        assert!(Limits::new().hint_for_signal(libc::SIGKILL).is_none());
        assert!(Limits::new().hint_for_signal(libc::SIGSEGV).is_none());
    }

    #[test]
    fn one_cpu_each_pins_children_in_turn() {
        let l = Limits::new().one_cpu_each([3, 5]);
        let cpus: Vec<_> = (1..=5).map(|n| l.for_child(n).affinity.unwrap()).collect();
        assert_eq!(cpus, [vec![3], vec![5], vec![3], vec![5], vec![3]]);
        assert!(Limits::new().one_cpu_each([]).check().unwrap_err().contains("one_cpu_each"));
    }

    #[test]
    fn bad_limits_are_refused_by_name() {
        assert!(Limits::new().nice(40).check().unwrap_err().contains("nice"));
        assert!(Limits::new().cpu_affinity([]).check().unwrap_err().contains("cpu_affinity"));
        assert!(Limits::new().nice(3).open_files(100).check().is_ok());
    }
}
