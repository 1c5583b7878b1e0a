//! The fork server: a template process that forks children on request.
//!
//! The template is started like any child (exec of this program, handshake, `init()`),
//! so it is single-threaded and carries nothing of its parent but what the handshake
//! gave it. It runs an optional *preload* (`fn()`: load a model, a dictionary, a big
//! read-only table), says so, then serves fork requests: each carries the socket the new
//! child will talk to its real parent on (`SCM_RIGHTS`). The template checks it is still
//! single-threaded, forks (`sys::fork::fork_sibling`: the new process is a child of the
//! template's parent, not of the template) and answers with the pid; the new process
//! closes the template's socket and does the ordinary child handshake on the socket it
//! received ([`super::run_forked`]). A request carries the child's cgroup too, when it
//! is contained in one, and the template creates the child inside it (`clone3`): a move
//! into a cgroup afterwards costs the parent an RCU grace period (milliseconds) per
//! child. The parent's side is the same as for an exec'd child
//! from there on (its cgroup, its limits, its hello), but for the containment guard:
//! where children are contained by cgroups, their cgroups are made under one subtree
//! of the server's, and the first template starts one guard for that subtree
//! (`FORKSERVER_GUARD`), which outlives it and kills and removes the subtree when the
//! owner dies; a child forks no guard of its own (one process, and one fork of the
//! child's pages, fewer per worker started). That one guard can be killed by a task (it
//! runs as the same user): the parent holds its pidfd, and a thread of the parent's
//! (`multiproc-guard-keeper`) waits on it and has the template (a new one if the
//! template is gone too) start another at once; a fork checks it first too, so that no
//! child is forked into the subtree while no guard watches it.
//!
//! The template's C library backs large allocations with transparent huge pages
//! (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, set for its exec only): a fork copies the
//! page tables of everything the preload filled, one entry per 4 KiB page without them
//! (about 30 ms for 512 MiB, per worker), one per 2 MiB with them. Workers inherit the
//! setting with the template's allocator; their children do not.
//!
//! What this buys: no exec, no dynamic loading, and memory the preload filled shared
//! copy-on-write by every child. What it keeps: the template never runs a task; it dies
//! with its parent (parent-death signal, as every child); a child outlives a template
//! that dies (it is not the template's child); a template that dies is started again at
//! the next request.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use serde::{Deserialize, Serialize};

use super::identity::{self, SameBuild};
use super::{ChildContext, ChildProcess, ChildSpec};
use crate::sys;
use crate::wire::frame::Channel;
use crate::wire::kinds::{FORKSERVER_FORK, FORKSERVER_FORKED, FORKSERVER_GUARD, FORKSERVER_GUARDED, FORKSERVER_READY};
use crate::wire::{FrameError, codec};

/// What the template is told at its start.
#[derive(Serialize, Deserialize)]
struct TemplateSetup {
    /// The preload, a `fn()`, as an offset (`identity::offset_of`).
    preload: Option<i64>,
}

/// The template's answer to one fork request.
#[derive(Serialize, Deserialize)]
enum Forked {
    /// The new child's pid, and whether it was created in the cgroup it was sent.
    Pid(u32, bool),
    Refused(String),
}

/// A running template, as its parent sees it; killed and reaped when dropped.
struct Template {
    process: ChildProcess,
    channel: Channel,
}

impl Drop for Template {
    fn drop(&mut self) {
        let _ = self.process.kill_and_reap();
    }
}

/// The parent's side of a fork server: the template (started again if it dies), and the
/// thread that keeps a guard watching the subtree, if there is one.
pub(crate) struct ForkServer {
    server: Arc<Server>,
    /// With a guarded subtree: the thread that starts a new guard when the guard dies.
    keeper: Option<GuardKeeper>,
}

/// What the parent keeps of its fork server, shared with the guard's keeper thread.
struct Server {
    spec: ChildSpec,
    preload: Option<i64>,
    slot: Mutex<Slot>,
    /// Templates started so far (the first, and one per restart).
    started: AtomicU64,
    /// The running template's pid (0: none), readable without waiting for a fork.
    pid: AtomicU32,
    /// With cgroup containment, the subtree every child's cgroup is made in.
    guarded: Option<Guarded>,
}

/// What the lock of a server holds: the running template and the subtree's guard.
struct Slot {
    template: Option<Template>,
    /// The pidfd of the subtree's guard (none yet, or none could be started).
    guard: Option<OwnedFd>,
}

/// A subtree that one guard watches, and the pipe that tells the guard this server is
/// done with it.
struct Guarded {
    subtree: Arc<crate::isolation::Subtree>,
    /// The write end: closed when the server is dropped, after it removed the subtree.
    _done: OwnedFd,
    /// The read end, which each guard started watches (a copy of it).
    watched: OwnedFd,
}

impl std::fmt::Debug for ForkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkServer").field("started", &self.server.started).finish()
    }
}

/// Why a template could not fork.
enum Failure {
    /// The template is gone or does not answer: start another.
    Lost(String),
    /// The template refused (it has threads, or the fork failed).
    Refused(String),
}

impl ForkServer {
    /// Starts a template as `spec` says (its name, timeout, executable; no isolation of
    /// its own) that runs `preload` (a `fn()`) first. Fails if the preload panics.
    pub(crate) fn start(spec: &ChildSpec, preload: Option<fn()>) -> Result<ForkServer, crate::Error> {
        let subtree = crate::isolation::subtree_for(&spec.isolation);
        let mut spec = spec.clone();
        spec.name = "PoolForkServer".into();
        spec.isolation = crate::isolation::Policy::none();
        spec.huge_pages = true;
        let preload = preload.map(|f| identity::offset_of(f as usize));
        let mut server = Server {
            spec,
            preload,
            slot: Mutex::new(Slot { template: None, guard: None }),
            started: AtomicU64::new(0),
            pid: AtomicU32::new(0),
            guarded: None,
        };
        let mut first = server.start_template()?;
        // Where the subtree or its guard cannot be had, each child has a guard of its own.
        if let Some((guarded, guard)) = subtree.and_then(|dir| guard_subtree(&mut first, dir, &server.spec).ok()) {
            server.guarded = Some(guarded);
            server.lock().guard = Some(guard);
        }
        server.lock().template = Some(first);
        let server = Arc::new(server);
        let keeper = match server.guarded {
            Some(_) => Some(GuardKeeper::start(&server)?),
            None => None,
        };
        Ok(ForkServer { server, keeper })
    }

    /// The cgroup that the cgroups of this server's children go in, watched by one guard
    /// for them all, if there is one.
    pub(crate) fn guarded_subtree(&self) -> Option<&Arc<crate::isolation::Subtree>> {
        self.server.guarded.as_ref().map(|g| &g.subtree)
    }

    /// Makes the cgroups of `count` children ahead of the first fork, where they go in a
    /// guarded subtree (see `Subtree::stock`).
    pub(crate) fn stock_cgroups(&self, count: usize) {
        if let Some(subtree) = self.guarded_subtree() {
            subtree.stock(count);
        }
    }

    /// Templates started so far: 1, plus one per template that died and was replaced.
    pub(crate) fn templates_started(&self) -> u64 {
        self.server.started.load(Ordering::Relaxed)
    }

    /// The template's pid, if one runs.
    pub(crate) fn template_pid(&self) -> Option<u32> {
        Some(self.server.pid.load(Ordering::Relaxed)).filter(|p| *p != 0)
    }

    /// Has the template fork a child that will do its handshake on `theirs`, created in
    /// the cgroup `cgroup` (an open directory) if one is given and the kernel lets the
    /// template; the child is this process's child. Returns it, and whether it is in its
    /// cgroup already. A template that is gone is started again (once), and so is a
    /// guard of the subtree that is gone, before the fork.
    pub(crate) fn fork(
        &self,
        theirs: &UnixStream,
        cgroup: Option<BorrowedFd<'_>>,
    ) -> Result<(ChildProcess, bool), crate::Error> {
        self.server.fork(theirs, cgroup)
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        // The keeper first: it starts no guard (nor template) any more. The server is
        // dropped after it, by the last reference, this one.
        self.keeper = None;
    }
}

impl Server {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_template(&self) -> Result<Template, crate::Error> {
        let setup = TemplateSetup { preload: self.preload };
        let spawned =
            super::start(template_entry, "multiproc::spawn::forkserver::template_entry", &self.spec, |buf| {
                codec::encode_into(&setup, buf)
            })?;
        self.started.fetch_add(1, Ordering::Relaxed);
        let mut t = Template { process: spawned.process, channel: spawned.channel };
        let pid = t.process.pid();
        let deadline = Instant::now().checked_add(self.spec.start_timeout);
        let frame = t.channel.recv(deadline).map_err(|source| crate::Error::Protocol { pid, source })?;
        let ready = match frame.kind {
            FORKSERVER_READY => frame.decode::<Result<(), String>>().map_err(|e| e.to_string()).and_then(|r| r),
            k => Err(format!("unexpected frame kind {k:#04x} from the fork server")),
        };
        ready.map_err(|reason| crate::Error::Protocol { pid, source: FrameError::Malformed(reason) })?;
        self.pid.store(pid, Ordering::Relaxed);
        Ok(t)
    }

    /// The template lost: dropping it kills and reaps it.
    fn lose_template(&self, slot: &mut Slot) {
        slot.template = None;
        self.pid.store(0, Ordering::Relaxed);
    }

    /// Makes sure a template runs and, with a guarded subtree, that a guard watches it:
    /// starts either that is gone (a template lost on the way is started again, once).
    fn ready(&self, slot: &mut Slot) -> Result<(), crate::Error> {
        let guard_lives = slot.guard.as_ref().is_some_and(|g| !sys::contain::pidfd_ended(g.as_fd()));
        let guarded = self.guarded.as_ref().filter(|_| !guard_lives);
        let mut lost = String::new();
        for _ in 0..2 {
            if slot.template.is_none() {
                slot.template = Some(self.start_template()?);
            }
            let Some(guarded) = guarded else { return Ok(()) };
            let t = slot.template.as_mut().expect("just set");
            match start_guard(t, guarded.subtree.dir(), &guarded.watched, self.spec.start_timeout) {
                Ok(guard) => {
                    slot.guard = Some(guard);
                    return Ok(());
                }
                Err(Failure::Refused(why)) => return Err(guard_error(&why)),
                Err(Failure::Lost(why)) => {
                    self.lose_template(slot);
                    lost = why;
                }
            }
        }
        Err(guard_error(&format!("the fork server is lost: {lost}")))
    }

    fn fork(&self, theirs: &UnixStream, cgroup: Option<BorrowedFd<'_>>) -> Result<(ChildProcess, bool), crate::Error> {
        let mut slot = self.lock();
        let mut lost = String::new();
        for _ in 0..2 {
            self.ready(&mut slot)?;
            let t = slot.template.as_mut().expect("a template is ready");
            let mut fds = vec![theirs.as_fd().try_clone_to_owned()?];
            if let Some(dir) = cgroup {
                fds.push(dir.try_clone_to_owned()?);
            }
            match request(t, fds, self.spec.start_timeout) {
                Ok((pid, in_cgroup)) => return Ok((ChildProcess::new(pid).map_err(crate::Error::Io)?, in_cgroup)),
                Err(Failure::Refused(why)) => return Err(crate::Error::Io(std::io::Error::other(why))),
                Err(Failure::Lost(why)) => {
                    self.lose_template(&mut slot);
                    lost = why;
                }
            }
        }
        Err(crate::Error::Io(std::io::Error::other(format!("the fork server is lost: {lost}"))))
    }
}

fn guard_error(why: &str) -> crate::Error {
    crate::Error::Io(std::io::Error::other(format!("the fork server's containment guard cannot be started: {why}")))
}

impl Drop for Server {
    fn drop(&mut self) {
        // The template first: it can create nothing in the subtree any more.
        self.lock().template = None;
        if let Some(guarded) = &self.guarded {
            // Every child has ended (each pool holds the server until its workers are
            // reaped); something left is killed. The guard (told by the pipe's closing,
            // after this) finds nothing to do.
            guarded.subtree.remove();
        }
    }
}

/// The thread that keeps a guard watching a server's subtree: it waits on the guard's
/// pidfd and, when the guard dies (a task may SIGKILL it), has another started at once,
/// whether or not a fork comes: an owner SIGKILLed later still has its subtree removed.
/// Stopped and joined when dropped.
struct GuardKeeper {
    /// The write end of the pipe whose closing stops the thread.
    stop: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long the keeper waits before trying again to start a guard that could not be;
/// doubled after each failure, up to [`GUARD_RETRY_MAX`] (a template that cannot start,
/// e.g. its program replaced on disk, is not tried ten times a second for ever).
const GUARD_RETRY: Duration = Duration::from_millis(100);
const GUARD_RETRY_MAX: Duration = Duration::from_secs(10);

impl GuardKeeper {
    fn start(server: &Arc<Server>) -> Result<GuardKeeper, crate::Error> {
        let (stopped, stop) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(std::io::Error::from)?;
        let server = server.clone();
        let thread = std::thread::Builder::new()
            .name("multiproc-guard-keeper".into())
            .spawn(move || keep_guard(&server, &stopped))?;
        Ok(GuardKeeper { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for GuardKeeper {
    fn drop(&mut self) {
        // Its read end polls readable (end of file) once this, the only writer, is gone.
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The keeper's loop: waits for the guard to die or for `stopped` to be closed; starts a
/// new guard after each death (tried again after [`GUARD_RETRY`], then longer, while it
/// cannot be).
fn keep_guard(server: &Server, stopped: &OwnedFd) {
    let mut retry: Option<Duration> = None;
    loop {
        // After a failure, or while none could be started, a wait of `retry` instead.
        let guard = match retry {
            Some(_) => None,
            None => server.lock().guard.as_ref().and_then(|g| g.try_clone().ok()),
        };
        let wait = retry.unwrap_or(GUARD_RETRY);
        let timeout = Timespec { tv_sec: wait.as_secs() as i64, tv_nsec: wait.subsec_nanos() as i64 };
        let mut fds = vec![PollFd::new(stopped, PollFlags::IN)];
        fds.extend(guard.iter().map(|g| PollFd::new(g, PollFlags::IN)));
        let polled = rustix::event::poll(&mut fds, guard.is_none().then_some(&timeout));
        if !fds[0].revents().is_empty() {
            return;
        }
        if polled.is_ok() {
            retry = match server.ready(&mut server.lock()) {
                Ok(()) => None,
                Err(_) => Some(retry.map_or(GUARD_RETRY, |r| (r * 2).min(GUARD_RETRY_MAX))),
            };
        }
    }
}

/// Has the first template start the guard of the subtree `dir` and make it: the guard
/// watches this process and a pipe whose write end is kept with `dir`. Returns them and
/// the guard's pidfd.
fn guard_subtree(t: &mut Template, dir: PathBuf, spec: &ChildSpec) -> Result<(Guarded, OwnedFd), String> {
    let (watched, done) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| e.to_string())?;
    let subtree = Arc::new(crate::isolation::Subtree::new(dir));
    let guard = match start_guard(t, subtree.dir(), &watched, spec.start_timeout) {
        Ok(guard) => guard,
        Err(Failure::Lost(why) | Failure::Refused(why)) => return Err(why),
    };
    Ok((Guarded { subtree, _done: done, watched }, guard))
}

/// Has the template `t` start a guard of the subtree `dir` (and make `dir` if it is not
/// made yet) that watches a copy of the pipe's read end `watched`; returns its pidfd.
fn start_guard(t: &mut Template, dir: &Path, watched: &OwnedFd, timeout: Duration) -> Result<OwnedFd, Failure> {
    let deadline = Instant::now().checked_add(timeout);
    let lost = |e: FrameError| Failure::Lost(e.to_string());
    let path = codec::encode(dir).map_err(|e| Failure::Refused(e.to_string()))?;
    let watched = watched.try_clone().map_err(|e| Failure::Refused(e.to_string()))?;
    t.channel.writer.queue_parts(FORKSERVER_GUARD, &path, &[], &[watched]).map_err(lost)?;
    t.channel.writer.flush(deadline).map_err(lost)?;
    let frame = t.channel.recv(deadline).map_err(lost)?;
    if frame.kind != FORKSERVER_GUARDED {
        return Err(Failure::Lost(format!("unexpected frame kind {:#04x}", frame.kind)));
    }
    let mut fds = frame.fds;
    let guarded = codec::decode::<Result<(), String>>(frame.payload).map_err(|e| Failure::Lost(e.to_string()))?;
    guarded.map_err(Failure::Refused)?;
    fds.pop().ok_or_else(|| Failure::Lost("the fork server's guard came without its pidfd".into()))
}

/// The template's side of [`start_guard`]: starts the guard (while single-threaded),
/// then makes the subtree if it is not made yet; reaps the guard it started before
/// (`previous`), which the owner asks it to replace only once it is dead. Returns the
/// guard's pidfd.
fn start_subtree_guard(
    payload: &[u8],
    fds: Vec<OwnedFd>,
    owner: u32,
    previous: &mut Option<u32>,
) -> Result<OwnedFd, String> {
    let dir: PathBuf = codec::decode(payload).map_err(|e| e.to_string())?;
    let closed = fds.into_iter().next().ok_or("a guard request without its pipe")?;
    single_threaded("something started")?;
    if let Some(pid) = previous.take() {
        sys::contain::reap_ended(pid);
    }
    let (pid, guard) =
        sys::contain::spawn_subtree_guard(&dir, owner, closed).map_err(|e| format!("cannot start the guard: {e}"))?;
    *previous = Some(pid);
    match sys::contain::cgroup_create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            // A guard of nothing: it must not wait on for every retry of the owner's.
            sys::contain::kill_pid(pid, libc::SIGKILL);
            Err(format!("cannot create cgroup {}: {e}", dir.display()))
        }
        _ => Ok(guard),
    }
}

/// One fork request (the child's socket, then its cgroup's directory if any) and its
/// answer.
fn request(t: &mut Template, fds: Vec<OwnedFd>, timeout: Duration) -> Result<(u32, bool), Failure> {
    let deadline = Instant::now().checked_add(timeout);
    let lost = |e: FrameError| Failure::Lost(e.to_string());
    t.channel.writer.queue_parts(FORKSERVER_FORK, &[], &[], &fds).map_err(lost)?;
    t.channel.writer.flush(deadline).map_err(lost)?;
    let frame = t.channel.recv(deadline).map_err(lost)?;
    if frame.kind != FORKSERVER_FORKED {
        return Err(Failure::Lost(format!("unexpected frame kind {:#04x}", frame.kind)));
    }
    match frame.decode::<Forked>() {
        Ok(Forked::Pid(pid, in_cgroup)) => Ok((pid, in_cgroup)),
        Ok(Forked::Refused(why)) => Err(Failure::Refused(why)),
        Err(e) => Err(Failure::Lost(e.to_string())),
    }
}

/// Runs the preload, if any; its panic as an error.
fn preload(setup: &TemplateSetup) -> Result<(), String> {
    let Some(offset) = setup.preload else { return Ok(()) };
    // The parent made the offset with `offset_of` from a `fn()`.
    let f: fn() = SameBuild::parent().function_at(offset);
    std::panic::catch_unwind(f).map_err(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        format!("the fork server's preload panicked: {msg}")
    })
}

/// The template's side: preload, then one fork per request until its parent hangs up.
fn template_entry(ctx: ChildContext) {
    let ChildContext { mut channel, payload, .. } = ctx;
    let setup: TemplateSetup = match codec::decode(&payload) {
        Ok(s) => s,
        Err(_) => sys::proc::exit_now(2),
    };
    // Named for `ps`; each child gets the program's name back.
    let own_name = sys::proc::name();
    sys::proc::set_name(c"multiproc-forks");
    super::without_huge_page_tunable();
    let ready = preload(&setup).and_then(|()| single_threaded("its preload left"));
    if channel.send(FORKSERVER_READY, &ready).is_err() || ready.is_err() {
        sys::proc::exit_now(1);
    }
    let parent = sys::proc::getppid();
    let mut guard = None;
    loop {
        let mut fds = match channel.recv(None) {
            Ok(frame) if frame.kind == FORKSERVER_FORK => frame.fds.into_iter(),
            Ok(frame) if frame.kind == FORKSERVER_GUARD => {
                let started = start_subtree_guard(frame.payload, frame.fds, parent, &mut guard);
                if answer_guard(&mut channel, started).is_err() {
                    sys::proc::exit_now(0);
                }
                continue;
            }
            _ => sys::proc::exit_now(0),
        };
        let (sock, cgroup) = (fds.next(), fds.next());
        let answer = match sock {
            None => Forked::Refused("a fork request without a socket".into()),
            Some(sock) => match fork_one(cgroup.as_ref().map(|d| d.as_fd())) {
                Ok(Some((pid, in_cgroup))) => Forked::Pid(pid, in_cgroup),
                Ok(None) => {
                    // The new child: nothing of the template's connection stays open in it.
                    drop(channel);
                    drop(cgroup);
                    if let Some(name) = &own_name {
                        sys::proc::set_name(name);
                    }
                    super::run_forked(sock, parent)
                }
                Err(why) => Forked::Refused(why),
            },
        };
        if channel.send(FORKSERVER_FORKED, &answer).is_err() {
            sys::proc::exit_now(0);
        }
    }
}

/// The template's answer to a guard request: whether the guard was started, with its
/// pidfd (which the template does not keep: no child forked after it inherits it).
fn answer_guard(channel: &mut Channel, started: Result<OwnedFd, String>) -> Result<(), FrameError> {
    let (answer, fds) = match started {
        Ok(guard) => (Ok(()), vec![guard]),
        Err(why) => (Err(why), Vec::new()),
    };
    let payload = codec::encode(&answer).map_err(|e| FrameError::Malformed(e.to_string()))?;
    channel.writer.queue_parts(FORKSERVER_GUARDED, &payload, &[], &fds)?;
    channel.writer.flush(None)
}

/// Whether this process has one thread; else why not (`what` says who started the rest).
fn single_threaded(what: &str) -> Result<(), String> {
    match sys::contain::threads() {
        1 => Ok(()),
        n => Err(format!(
            "the fork server has {n} threads ({what} {} running): it forks only when single-threaded",
            n - 1
        )),
    }
}

/// Forks once, into `cgroup` where it can: the pid (and whether it is in the cgroup) in
/// the template, `None` in the new child. The template was single-threaded when it said
/// it was ready (after its preload, the only code of the user's it runs), and nothing it
/// runs since starts a thread: no look at `/proc` per fork.
fn fork_one(cgroup: Option<BorrowedFd<'_>>) -> Result<Option<(u32, bool)>, String> {
    // Nothing buffered in the template may be written again by every child.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    sys::fork::fork_sibling(cgroup).map_err(|e| format!("the fork server cannot fork: {e}"))
}
