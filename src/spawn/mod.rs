//! How a child starts and what it runs.
//!
//! A child is the same executable, started again (`/proc/self/exe`) with the
//! `MULTIPROC_CHILD` environment marker and its end of a socketpair at descriptor 3.
//! [`init()`] notices the marker, removes it (so the child's own children are ordinary
//! programs), completes the handshake and runs the function its parent named. In the
//! parent, `init()` only records that it ran.

mod child;
pub(crate) mod forkserver;
// Turns function addresses into offsets and back: `unsafe` by nature (see its header).
#[allow(unsafe_code)]
pub(crate) mod identity;
mod watchdog;

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

pub(crate) use child::ChildProcess;
#[doc(hidden)]
pub use watchdog::start_test_watchdog;

use crate::Error;
use crate::sys;
use crate::wire::frame::Channel;
use crate::wire::handshake::{Hello, KIND_HELLO, KIND_REPLY, MAGIC, PROTOCOL_VERSION, Refusal, Reply};
use crate::wire::{CodecError, FrameError, codec};

/// The environment variable that tells a process it is a multiproc child.
const MARKER: &str = "MULTIPROC_CHILD";

/// The default deadline for a child's handshake.
pub(crate) const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

static INIT_CALLED: AtomicBool = AtomicBool::new(false);
static EXECUTABLE: RwLock<Option<PathBuf>> = RwLock::new(None);
static SELF: OnceLock<Identity> = OnceLock::new();
/// A child forked by a fork server inherits the template's `SELF`: its own goes here.
static FORKED: OnceLock<Identity> = OnceLock::new();

/// Who this process is, as `current_process()` and `parent_process()` report it.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent: Option<(String, u32)>,
}

/// This process's identity: "MainProcess" unless it was started by multiproc.
pub(crate) fn identity() -> &'static Identity {
    if let Some(me) = FORKED.get() {
        return me;
    }
    SELF.get_or_init(|| Identity { name: "MainProcess".into(), identity: Vec::new(), daemon: false, parent: None })
}

/// Makes this program able to run multiproc children; **call it first in `main`**.
///
/// In the program you start, `init()` returns at once. In a child — the same executable,
/// started again by [`Process::start`](crate::Process::start) or a pool — it never
/// returns: it checks that the parent runs the very same build, runs the function the
/// parent named, and exits.
///
/// Everything *before* `init()` in `main` runs in every child too, just as code at the top
/// level of a Python module runs again in a `spawn`ed child; that is why it belongs on the
/// first line. Integration-test files, whose `main` is generated, use
/// [`test_init!`](crate::test_init) instead.
///
/// ```
/// fn main() {
///     multiproc::init();
///     // the program itself
/// }
/// ```
pub fn init() {
    if INIT_CALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Some(marker) = std::env::var_os(MARKER) else { return };
    sys::proc::remove_env(MARKER);
    run_child(marker)
}

/// Runs children from `path` instead of this program's own executable, like Python's
/// `multiprocessing.set_executable`. The executable must be the same build — a different
/// one is refused at its handshake with [`Error::WrongBinary`].
///
/// ```
/// multiproc::init();
/// multiproc::set_executable(std::env::current_exe()?); // the default already
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn set_executable(path: impl Into<PathBuf>) {
    *EXECUTABLE.write().unwrap_or_else(|e| e.into_inner()) = Some(path.into());
}

fn executable(over: Option<&PathBuf>) -> PathBuf {
    over.cloned()
        .or_else(|| EXECUTABLE.read().unwrap_or_else(|e| e.into_inner()).clone())
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"))
}

/// What a child receives besides its socket: set by the parent, read by the entry.
pub(crate) struct ChildContext {
    pub(crate) channel: Channel,
    pub(crate) payload: Vec<u8>,
    /// Descriptors that came with the payload (handles inside the argument), for
    /// `wire::fds::with_incoming` while decoding it.
    pub(crate) fds: Vec<std::os::fd::OwnedFd>,
}

/// An entry function: what a child runs after its handshake. It may exit by itself;
/// if it returns, the child exits with code 0.
pub(crate) type Entry = fn(ChildContext);

/// How to start one child.
#[derive(Debug, Clone)]
pub(crate) struct ChildSpec {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) executable: Option<PathBuf>,
    pub(crate) start_timeout: Duration,
    pub(crate) max_frame: u32,
    /// Its containment, limits and sandbox.
    pub(crate) isolation: crate::isolation::Policy,
    /// Whether its C library backs large allocations with transparent huge pages (the
    /// fork server's template: see `forkserver`).
    pub(crate) huge_pages: bool,
}

/// A child that completed its handshake and runs its entry.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) process: ChildProcess,
    pub(crate) channel: Channel,
}

/// Starts a child that runs `entry`, which reads what `write_payload` wrote.
///
/// The payload is encoded before anything starts, so a value that does not serialize
/// costs no process. On any failure the child is killed and reaped before returning.
pub(crate) fn start(
    entry: Entry,
    entry_name: &str,
    spec: &ChildSpec,
    write_payload: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
) -> Result<Spawned, Error> {
    start_watched(entry, entry_name, spec, write_payload, |_| {})
}

/// As [`start`], calling `spawned` with the child as soon as it exists, before its
/// handshake: what a pool keeps to kill a worker that is still starting when it closes.
pub(crate) fn start_watched(
    entry: Entry,
    entry_name: &str,
    spec: &ChildSpec,
    write_payload: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
    spawned: impl FnOnce(&ChildProcess),
) -> Result<Spawned, Error> {
    start_via(entry, entry_name, spec, write_payload, spawned, None)
}

/// How a child comes to exist when it is not exec'd: given the socket it will do its
/// handshake on, a process of ours (a fork server's `ForkServer::fork`).
pub(crate) type Fork<'a> =
    &'a dyn Fn(&UnixStream, Option<std::os::fd::BorrowedFd<'_>>) -> Result<(ChildProcess, bool), Error>;

/// As [`start_watched`], the child made by `fork` when there is one (else exec'd): the
/// same handshake, containment and limits either way.
pub(crate) fn start_via(
    entry: Entry,
    entry_name: &str,
    spec: &ChildSpec,
    write_payload: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
    spawned: impl FnOnce(&ChildProcess),
    fork: Option<Fork<'_>>,
) -> Result<Spawned, Error> {
    if !INIT_CALLED.load(Ordering::SeqCst) {
        return Err(Error::InitNotCalled);
    }
    spec.isolation.check().map_err(Error::Isolation)?;
    let (isolation, mut contained) = crate::isolation::prepare(&spec.isolation).map_err(Error::Isolation)?;
    let hello = hello_for(entry, entry_name, spec, isolation);
    let (ours, theirs) = UnixStream::pair()?;
    let mut channel = Channel::new(ours, spec.max_frame);
    queue_hello(&mut channel, &hello, write_payload)?;
    let (mut process, exe, in_cgroup) = match fork {
        Some(fork) => {
            let forked = fork(&theirs, contained.cgroup_dir());
            // The child has its copy: ours must close, so that its death is a hang-up.
            drop(theirs);
            // Created in its cgroup by the template where it could; else moved in below.
            let (process, in_cgroup) = forked?;
            (process, executable(spec.executable.as_ref()), in_cgroup)
        }
        None => spawn_child(spec, theirs, contained.cgroup_dir())?,
    };
    // Into its cgroup before its handshake (before any initializer or task runs), if it
    // was not created there.
    if let Err(e) = contained.adopt(process.pid(), in_cgroup) {
        let _ = process.kill_and_reap();
        return Err(Error::Isolation(format!("cannot move child {} into its cgroup: {e}", process.pid())));
    }
    process.contain(contained);
    spawned(&process);
    // A timeout too large to add to now (e.g. `Duration::MAX`) means no deadline.
    let deadline = Instant::now().checked_add(spec.start_timeout);
    match handshake(&mut channel, deadline) {
        Ok(()) => Ok(Spawned { process, channel }),
        Err(fail) => Err(failed_start(process, exe, spec.start_timeout, fail)),
    }
}

/// The hello that tells a child started as `spec` says to run `entry`.
fn hello_for(entry: Entry, entry_name: &str, spec: &ChildSpec, isolation: crate::isolation::ChildIsolation) -> Hello {
    let me = identity();
    Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        fingerprint: identity::fingerprint(),
        parent_pid: sys::proc::getpid(),
        parent_name: me.name.clone(),
        name: spec.name.clone(),
        identity: spec.identity.clone(),
        daemon: spec.daemon,
        max_frame: spec.max_frame,
        entry: identity::offset_of(entry as usize),
        entry_name: entry_name.to_string(),
        isolation,
    }
}

/// Queues the hello with the payload right behind it, in one frame; nothing is sent yet.
fn queue_hello(
    channel: &mut Channel,
    hello: &Hello,
    write_payload: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
) -> Result<(), Error> {
    channel
        .writer
        .queue_with(KIND_HELLO, |buf| {
            codec::encode_into(hello, buf)?;
            write_payload(buf)
        })
        .map_err(|e| match e {
            FrameError::Codec(c) => Error::Codec(c),
            FrameError::Oversized { len, max } => Error::TooLarge { len, max },
            other => Error::Protocol { pid: 0, source: other },
        })
}

/// Starts the executable (this program unless `over` names another) again with `theirs`
/// as its socket and the child marker in its environment, inside the cgroup `cgroup` if
/// the kernel allows; returns it, the path run and whether it is in that cgroup.
fn spawn_child(
    spec: &ChildSpec,
    theirs: UnixStream,
    cgroup: Option<std::os::fd::BorrowedFd<'_>>,
) -> Result<(ChildProcess, PathBuf, bool), Error> {
    let exe = executable(spec.executable.as_ref());
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    if argv.is_empty() {
        argv.push(OsString::from("multiproc-child"));
    }
    // The child checks that its parent is still this process before anything else.
    let marker = format!("{}:{}", sys::exec::CHILD_SOCKET_FD, sys::proc::getpid());
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().filter(|(k, _)| k != MARKER).collect();
    env.push((MARKER.into(), marker.into()));
    if spec.huge_pages {
        with_huge_page_tunable(&mut env);
    }
    let spawned = sys::exec::spawn_with_socket(exe.clone().into_os_string(), argv, env, theirs.as_fd(), cgroup)
        .map_err(|source| Error::Spawn { executable: exe.clone(), source })?;
    drop(theirs);
    let process = ChildProcess::new(spawned.pid).map_err(Error::Io)?;
    Ok((process, exe, spawned.in_cgroup))
}

/// The glibc tunable that makes `malloc` advise huge pages for what it maps.
const HUGE_PAGE_TUNABLE: &str = "glibc.malloc.hugetlb=1";
const TUNABLES: &str = "GLIBC_TUNABLES";

/// Adds [`HUGE_PAGE_TUNABLE`] last to the tunables in `env` (the C library reads them at
/// the exec, so only the new program is affected).
fn with_huge_page_tunable(env: &mut Vec<(OsString, OsString)>) {
    match env.iter_mut().find(|(k, _)| k == TUNABLES) {
        Some((_, v)) if !v.is_empty() => v.push(format!(":{HUGE_PAGE_TUNABLE}")),
        Some((_, v)) => *v = HUGE_PAGE_TUNABLE.into(),
        None => env.push((TUNABLES.into(), HUGE_PAGE_TUNABLE.into())),
    }
}

/// In a child started with [`with_huge_page_tunable`], right after its start (while it
/// has one thread): the environment as its parent had it, so that the programs it starts
/// get the parent's tunables.
pub(crate) fn without_huge_page_tunable() {
    let Some(v) = std::env::var_os(TUNABLES) else { return };
    match tunables_without_ours(&v.to_string_lossy()) {
        Some("") => sys::proc::remove_env(TUNABLES),
        Some(rest) => sys::proc::set_env(TUNABLES, rest),
        None => {}
    }
}

/// `tunables` without the [`HUGE_PAGE_TUNABLE`] that [`with_huge_page_tunable`] put last;
/// `None` if it is not there.
fn tunables_without_ours(tunables: &str) -> Option<&str> {
    let rest = tunables.strip_suffix(HUGE_PAGE_TUNABLE)?;
    match rest.strip_suffix(':') {
        Some(r) => Some(r),
        None if rest.is_empty() => Some(""),
        None => None,
    }
}

/// How a handshake went wrong, before the child's fate is known.
enum StartFailure {
    Frame(FrameError),
    Refused(Refusal),
}

fn handshake(channel: &mut Channel, deadline: Option<Instant>) -> Result<(), StartFailure> {
    if let Err(e) = channel.writer.flush(deadline) {
        // A child that hung up may still have said why (a refusal, or bad bytes):
        // report what it sent rather than just the hang-up.
        if matches!(e, FrameError::Closed) {
            return match read_reply(channel, deadline) {
                Ok(()) => Err(StartFailure::Frame(FrameError::Closed)),
                other => other,
            };
        }
        return Err(StartFailure::Frame(e));
    }
    read_reply(channel, deadline)
}

fn read_reply(channel: &mut Channel, deadline: Option<Instant>) -> Result<(), StartFailure> {
    let frame = channel.reader.recv(deadline).map_err(StartFailure::Frame)?;
    if frame.kind != KIND_REPLY {
        return Err(StartFailure::Frame(FrameError::Malformed(format!(
            "expected a handshake reply (kind {KIND_REPLY:#04x}), got kind {:#04x}",
            frame.kind
        ))));
    }
    match frame.decode::<Reply>() {
        Ok(Reply::Ready { magic, .. }) if magic == MAGIC => Ok(()),
        Ok(Reply::Ready { .. }) => Err(StartFailure::Frame(FrameError::Malformed("bad magic in the reply".into()))),
        Ok(Reply::Refused { reason }) => Err(StartFailure::Refused(reason)),
        Err(e) => Err(StartFailure::Frame(FrameError::Malformed(e.to_string()))),
    }
}

/// Turns a failed handshake into an error, after making sure the child is gone.
fn failed_start(process: ChildProcess, executable: PathBuf, timeout: Duration, fail: StartFailure) -> Error {
    let pid = process.pid();
    // A child that closed its end or refused is on its way out: give it a moment to exit
    // by itself so its own exit code can be reported, then make sure.
    let grace = Duration::from_secs(2);
    let exited = match &fail {
        StartFailure::Frame(FrameError::Closed | FrameError::Truncated { .. }) | StartFailure::Refused(_) => {
            process.wait_timeout(Some(grace)).ok().flatten()
        }
        _ => None,
    };
    let exitcode = match exited {
        Some(code) => code,
        None => process.kill_and_reap().unwrap_or(-libc::SIGKILL),
    };
    match fail {
        StartFailure::Refused(Refusal::WrongBinary { child_fingerprint }) => {
            Error::WrongBinary { pid, executable, expected: identity::fingerprint(), found: child_fingerprint }
        }
        StartFailure::Refused(Refusal::Version { child_version }) => {
            Error::Version { pid, expected: PROTOCOL_VERSION, found: child_version }
        }
        StartFailure::Frame(FrameError::TimedOut) => Error::StartTimeout { pid, executable, timeout },
        StartFailure::Frame(FrameError::Closed) if exited.is_some() => {
            Error::DiedDuringStart { pid, executable, exitcode }
        }
        StartFailure::Frame(source) => Error::Protocol { pid, source },
    }
}

/// The child side: handshake, then the entry; never returns.
fn run_child(marker: OsString) -> ! {
    serve(adopt_parent_socket(&marker))
}

/// A child just forked by a fork server (`forkserver`): tied to `parent` as an exec'd
/// child is, then the same handshake on `sock`, its socket to the parent.
pub(crate) fn run_forked(sock: std::os::fd::OwnedFd, parent: u32) -> ! {
    match sys::exec::die_with_parent(parent) {
        Ok(true) => {}
        Ok(false) => sys::proc::exit_now(1),
        Err(e) => child_fail(format!("cannot set the parent-death signal: {e}")),
    }
    let _ = sys::fd::set_cloexec(sock.as_fd(), true);
    serve(Channel::new(sock, crate::wire::DEFAULT_MAX_FRAME))
}

/// The child's handshake on `channel`, then its entry; never returns.
fn serve(mut channel: Channel) -> ! {
    let (hello, payload, fds) = read_hello(&mut channel);
    let same_build = check_hello(&mut channel, &hello);
    let me = Identity {
        name: hello.name,
        identity: hello.identity,
        daemon: hello.daemon,
        parent: Some((hello.parent_name, hello.parent_pid)),
    };
    // A forked child has its template's identity already: its own overrides it.
    if let Err(me) = SELF.set(me) {
        let _ = FORKED.set(me);
    }
    channel.set_max_frame(hello.max_frame);
    if let Err(e) = crate::isolation::apply_in_child(&hello.isolation, hello.parent_pid) {
        child_fail(e);
    }
    if let Err(e) = channel.send(KIND_REPLY, &Reply::Ready { magic: MAGIC, pid: sys::proc::getpid() }) {
        child_fail(format!("cannot answer the parent: {e}"));
    }
    // The parent computed `hello.entry` with `identity::offset_of` from an `Entry`.
    let entry: Entry = same_build.function_at(hello.entry);
    entry(ChildContext { channel, payload, fds });
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(0)
}

/// A child that cannot start says why on its stderr and exits with code 2.
fn child_fail(msg: String) -> ! {
    eprintln!("multiproc child {}: {msg}", sys::proc::getpid());
    sys::proc::exit_now(2)
}

/// A child that refuses its parent's hello tells the parent why, then fails.
fn refuse(channel: &mut Channel, reason: Refusal, msg: String) -> ! {
    let _ = channel.send(KIND_REPLY, &Reply::Refused { reason });
    child_fail(msg)
}

/// Ties this child to the parent the marker names and takes the socket it names.
fn adopt_parent_socket(marker: &OsString) -> Channel {
    // The marker is `<socket descriptor>:<parent pid>`.
    let (fd, parent): (i32, u32) = marker
        .to_str()
        .and_then(|s| s.split_once(':'))
        .and_then(|(fd, parent)| Some((fd.parse().ok()?, parent.parse().ok()?)))
        .unwrap_or_else(|| child_fail(format!("bad {MARKER} value {marker:?}")));
    // Die with the parent; if it already died, nobody would ever signal this child.
    match sys::exec::die_with_parent(parent) {
        Ok(true) => {}
        Ok(false) => sys::proc::exit_now(1),
        Err(e) => child_fail(format!("cannot set the parent-death signal: {e}")),
    }
    // Named as its parent, not `exe`; only cosmetic, so a failure is ignored.
    let _ = sys::proc::take_name_of(parent);
    let sock =
        sys::fd::adopt_inherited(fd).unwrap_or_else(|e| child_fail(format!("no socket at descriptor {fd}: {e}")));
    // The socket must not leak into programs this child starts.
    let _ = sys::fd::set_cloexec(sock.as_fd(), true);
    Channel::new(sock, crate::wire::DEFAULT_MAX_FRAME)
}

/// The parent's hello, the payload behind it and the descriptors that came with them.
fn read_hello(channel: &mut Channel) -> (Hello, Vec<u8>, Vec<std::os::fd::OwnedFd>) {
    let deadline = Instant::now() + DEFAULT_START_TIMEOUT;
    let frame = channel.recv(Some(deadline)).unwrap_or_else(|e| child_fail(format!("no hello from the parent: {e}")));
    if frame.kind != KIND_HELLO {
        child_fail(format!("expected a hello, got frame kind {:#04x}", frame.kind));
    }
    let fds = frame.fds;
    let (hello, payload) = codec::decode_prefix::<Hello>(frame.payload)
        .map(|(h, rest)| (h, rest.to_vec()))
        .unwrap_or_else(|e| child_fail(format!("unreadable hello: {e}")));
    if hello.magic != MAGIC {
        child_fail("the parent is not a multiproc program (bad magic)".into());
    }
    (hello, payload, fds)
}

/// Refuses a parent of another protocol version or another build; otherwise, the proof
/// that this child is the parent's build.
fn check_hello(channel: &mut Channel, hello: &Hello) -> identity::SameBuild {
    if hello.version != PROTOCOL_VERSION {
        let msg = format!("the parent speaks protocol {}, this program {PROTOCOL_VERSION}", hello.version);
        refuse(channel, Refusal::Version { child_version: PROTOCOL_VERSION }, msg);
    }
    let mine = identity::fingerprint();
    let Some(same_build) = identity::SameBuild::parent_checked(hello.fingerprint) else {
        let msg = format!(
            "refusing to run: this executable (fingerprint {mine:016x}) is not the parent's build ({:016x})",
            hello.fingerprint
        );
        refuse(channel, Refusal::WrongBinary { child_fingerprint: mine }, msg);
    };
    same_build
}

/// Makes an integration-test binary (whose `main` the test harness writes) able to start
/// multiproc children. Put it once at the top of the test file.
///
/// It runs [`init()`] before the harness's `main`, so a child started by a test becomes
/// its worker at once, whichever test started it; under `cargo test` and `cargo nextest
/// run` alike. In the test binary's own process it also starts a watchdog: a binary
/// still running after `MULTIPROC_TEST_WATCHDOG` seconds (600 unless set; `0` is off)
/// is aborted with a message naming it, so a hang fails a CI run instead of holding it.
///
/// ```ignore
/// // tests/my_test.rs
/// multiproc::test_init!();
///
/// fn double(x: u64) { assert_eq!(x * 2, 4) }
///
/// #[test]
/// fn runs_in_a_child() {
///     let mut p = multiproc::Process::new(double, 2);
///     p.start().unwrap();
///     p.join().unwrap();
///     assert_eq!(p.exitcode(), Some(0));
/// }
/// ```
#[macro_export]
macro_rules! test_init {
    () => {
        $crate::__run_before_main!($crate::init, $crate::__start_test_watchdog);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_huge_page_tunable_goes_last_and_comes_off_whole() {
        for before in [None, Some(""), Some("glibc.malloc.arena_max=2")] {
            let mut env: Vec<(OsString, OsString)> = vec![("A".into(), "1".into())];
            if let Some(b) = before {
                env.push((TUNABLES.into(), b.into()));
            }
            with_huge_page_tunable(&mut env);
            let v = env.iter().find(|(k, _)| k == TUNABLES).map(|(_, v)| v.to_string_lossy().into_owned()).unwrap();
            assert!(v.ends_with(HUGE_PAGE_TUNABLE), "{v}");
            assert_eq!(tunables_without_ours(&v), Some(before.unwrap_or("")), "{v}");
        }
        // What the child did not get from its parent stays as it is.
        assert_eq!(tunables_without_ours("glibc.malloc.arena_max=2"), None);
        assert_eq!(tunables_without_ours("xglibc.malloc.hugetlb=1"), None);
    }
}
