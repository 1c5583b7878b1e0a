//! `Process`: run a function in a child process, as Python's `multiprocessing.Process`.

mod reaper;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::spawn::{self, ChildContext, ChildProcess, ChildSpec};
use crate::wire::frame::Channel;
use crate::wire::{CodecError, codec};
use crate::{Error, sys};

/// A function to run in a child process, with its argument.
///
/// Made with [`Process::new`], configured with [`name`](Process::name) and
/// [`daemon`](Process::daemon), started with [`start`](Process::start). Like Python's,
/// a `Process` has no pid before it starts, `join`s, and reports an
/// [`exitcode`](Process::exitcode): 0, the code passed to `exit`, 1 after a panic, or
/// `-N` when a signal N ended it. Dropping a started `Process` without joining it lets
/// the child run on, as in Python; it is reaped in the background when it ends.
///
/// ```
/// use multiproc::Process;
///
/// fn greet(who: String) {
///     println!("hello, {who}, from process {}", std::process::id());
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init();
///     let mut p = Process::new(greet, "world".to_string()).name("greeter");
///     assert!(p.pid().is_none());
///     p.start()?;
///     p.join()?;
///     assert_eq!(p.exitcode(), Some(0));
///     Ok(())
/// }
/// ```
///
/// The function must be a fn item, a non-capturing closure or a `fn` pointer — a
/// capturing closure cannot be named in another process; pass its data as the argument:
///
/// ```compile_fail
/// let n = vec![1u8];
/// let p = multiproc::Process::new(move |x: u8| drop((x, n.clone())), 1u8);
/// ```
pub struct Process {
    name: Option<String>,
    daemon: bool,
    executable: Option<PathBuf>,
    start_timeout: Duration,
    max_frame: u32,
    isolation: crate::isolation::Policy,
    fn_name: &'static str,
    target: Option<Target>,
    started: Option<Arc<Record>>,
    /// Set by [`close`](Process::close): the process is gone and so is what was kept for it.
    closed: bool,
}

type Encode = Box<dyn FnOnce(&mut Vec<u8>) -> Result<(), CodecError> + Send>;

struct Target {
    entry: spawn::Entry,
    encode: Encode,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.get_name())
            .field("target", &self.fn_name)
            .field("daemon", &self.daemon)
            .field("pid", &self.pid())
            .finish()
    }
}

/// What a started child keeps in the parent, shared by its `Process` and the registry
/// of live children (which joins or terminates them at exit and reaps them).
#[derive(Debug)]
struct Record {
    name: String,
    daemon: bool,
    process: ChildProcess,
    /// The parent's end of the child's socket: while it is open the child lives on;
    /// when this process dies the child reads end-of-file and exits.
    lifeline: Mutex<Option<Channel>>,
}

impl Record {
    /// The exit code once ended; reaps, and leaves the registry, at the first sight of it.
    fn poll(self: &Arc<Self>) -> Option<i32> {
        let code = self.process.try_wait().ok().flatten()?;
        self.forget();
        Some(code)
    }

    fn forget(self: &Arc<Self>) {
        self.lifeline.lock().unwrap_or_else(|e| e.into_inner()).take();
        children().retain(|r| !Arc::ptr_eq(r, self));
    }
}

impl reaper::Wait for Arc<Record> {
    fn try_wait(&self) -> std::io::Result<Option<i32>> {
        let code = self.process.try_wait();
        if !matches!(code, Ok(None)) {
            self.forget();
        }
        code
    }

    fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.process.pidfd()
    }
}

/// Children whose `Process` was dropped while they ran.
static REAPER: reaper::Reaper<Arc<Record>> = reaper::Reaper::new();

fn children() -> std::sync::MutexGuard<'static, Vec<Arc<Record>>> {
    static CHILDREN: Mutex<Vec<Arc<Record>>> = Mutex::new(Vec::new());
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

/// At normal exit, as Python does: terminate daemonic children, then join the others.
extern "C" fn at_exit() {
    let live: Vec<Arc<Record>> = children().clone();
    for r in live.iter().filter(|r| r.daemon) {
        let _ = r.process.signal(libc::SIGTERM);
    }
    for r in &live {
        if r.daemon && r.process.wait_timeout(Some(Duration::from_secs(1))).ok().flatten().is_none() {
            let _ = r.process.signal(libc::SIGKILL);
        }
        let _ = r.process.wait();
        r.forget();
    }
}

static NEXT_CHILD: AtomicU32 = AtomicU32::new(1);

const CLOSED: &str = "the process was closed";

impl Process {
    /// A process that will run `f(arg)`.
    ///
    /// `f` is a fn item, a non-capturing closure, or a `fn(A)` pointer; `arg` travels to
    /// the child serialized (serde), so it is encoded at [`start`](Process::start).
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let mut p = multiproc::Process::new(work, ());
    /// p.start()?;
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new<F, A>(f: F, arg: A) -> Process
    where
        F: Fn(A) + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        let offset = spawn::identity::encode_fn::<F, fn(A)>(f);
        Process {
            name: None,
            daemon: false,
            executable: None,
            start_timeout: spawn::DEFAULT_START_TIMEOUT,
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
            isolation: crate::isolation::Policy::default(),
            fn_name: std::any::type_name::<F>(),
            target: Some(Target {
                entry: process_entry::<F, A>,
                encode: Box::new(move |buf| {
                    codec::encode_into(&(offset, &arg), buf)
                        .map_err(|e| CodecError { type_name: std::any::type_name::<A>(), ..e })
                }),
            }),
            started: None,
            closed: false,
        }
    }

    /// Names the process (default: `Process-N`); the child sees it in
    /// [`current_process()`](crate::current_process).
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let p = multiproc::Process::new(work, ()).name("loader");
    /// assert_eq!(p.get_name(), "loader");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Process {
        self.name = Some(name.into());
        self
    }

    /// Makes the process daemonic: it is terminated when its parent exits normally,
    /// where a non-daemonic one is waited for. Either way it dies if the parent is killed.
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let p = multiproc::Process::new(work, ()).daemon(true); // terminated when this process exits
    /// assert!(p.is_daemon());
    /// ```
    pub fn daemon(mut self, daemon: bool) -> Process {
        self.daemon = daemon;
        self
    }

    /// Runs the child from another executable (default: this program's own, or the one
    /// given to [`set_executable`](crate::set_executable)). It must be the same build.
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let mut p = multiproc::Process::new(work, ()).executable(std::env::current_exe()?);
    /// p.start()?;
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn executable(mut self, path: impl Into<PathBuf>) -> Process {
        self.executable = Some(path.into());
        self
    }

    /// How long [`start`](Process::start) waits for the child's handshake (default 30 s).
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// use std::time::Duration;
    /// let mut p = multiproc::Process::new(work, ()).start_timeout(Duration::from_secs(30));
    /// p.start()?;
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_timeout(mut self, timeout: Duration) -> Process {
        self.start_timeout = timeout;
        self
    }

    /// The largest frame (hence argument) the child's socket carries, in bytes
    /// (default [`DEFAULT_MAX_FRAME`](crate::DEFAULT_MAX_FRAME)). A larger
    /// argument makes [`start`](Process::start) fail before any process starts.
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let mut p = multiproc::Process::new(work, ()).max_frame_size(1 << 20);
    /// p.start()?;
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_frame_size(mut self, bytes: u32) -> Process {
        self.max_frame = bytes;
        self
    }

    /// How the child's descendants are contained (default [`Contain::Auto`](crate::Contain)):
    /// when the child ends, or is killed, whatever it started dies with it — see
    /// [`Contain`](crate::Contain) for the mechanisms. [`Contain::Off`](crate::Contain)
    /// lets them outlive it, as in Python.
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let mut p = multiproc::Process::new(work, ()).contain(multiproc::Contain::Off);
    /// p.start()?;
    /// p.join()?;
    /// assert_eq!(p.containment(), Some(multiproc::Containment::Off));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn contain(mut self, contain: crate::Contain) -> Process {
        self.isolation.contain = contain;
        self
    }

    /// Resource limits for the child, set before its target runs.
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let mut p = multiproc::Process::new(work, ()).limits(multiproc::Limits::new().open_files(64));
    /// p.start()?;
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn limits(mut self, limits: crate::Limits) -> Process {
        self.isolation.limits = limits;
        self
    }

    /// Confines the child with `sandbox` before its target runs; see
    /// [`Sandbox`](crate::Sandbox). A denied system call ends the child by SIGSYS
    /// (exit code -31), with the rule named on its stderr.
    #[cfg(feature = "sandbox")]
    pub fn sandbox(mut self, sandbox: crate::Sandbox) -> Process {
        self.isolation.sandbox = Some(sandbox);
        self
    }

    /// The containment in effect for the started child; `None` before [`start`](Process::start).
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let mut p = multiproc::Process::new(work, ());
    /// assert_eq!(p.containment(), None); // not started
    /// p.start()?;
    /// println!("contained by {:?}", p.containment());
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn containment(&self) -> Option<crate::Containment> {
        self.started.as_ref().map(|r| r.process.containment())
    }

    /// The process's name: the one given, else `Process-N` once started.
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let p = multiproc::Process::new(work, ()).name("loader");
    /// assert_eq!(p.get_name(), "loader");
    /// ```
    pub fn get_name(&self) -> &str {
        match (&self.name, &self.started) {
            (Some(n), _) => n,
            (None, Some(r)) => &r.name,
            (None, None) => "Process-?",
        }
    }

    /// Whether the process is daemonic.
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// assert!(!multiproc::Process::new(work, ()).is_daemon());
    /// ```
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Starts the child and waits for its handshake (not for the function).
    ///
    /// Fails if the argument does not serialize (no process is started then), if the
    /// child cannot start, is a different build, or dies or stalls before its handshake.
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let mut p = multiproc::Process::new(work, ());
    /// p.start()?;
    /// assert!(p.pid().is_some());
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(&mut self) -> Result<(), Error> {
        if self.closed {
            return Err(Error::State(CLOSED));
        }
        let target = self.target.take().ok_or(Error::State("a process can only be started once"))?;
        if spawn::identity().daemon {
            self.target = Some(target);
            return Err(Error::State("daemonic processes are not allowed to have children"));
        }
        static REGISTER: Once = Once::new();
        REGISTER.call_once(|| sys::proc::at_exit(at_exit));
        let n = NEXT_CHILD.fetch_add(1, Ordering::Relaxed);
        let mut identity = spawn::identity().identity.clone();
        identity.push(n);
        let name = self.name.clone().unwrap_or_else(|| {
            let parts: Vec<String> = identity.iter().map(u32::to_string).collect();
            format!("Process-{}", parts.join(":"))
        });
        let spec = ChildSpec {
            name: name.clone(),
            identity,
            daemon: self.daemon,
            executable: self.executable.clone(),
            start_timeout: self.start_timeout,
            max_frame: self.max_frame,
            isolation: self.isolation.clone(),
            huge_pages: false,
        };
        let spawned = spawn::start(target.entry, self.fn_name, &spec, target.encode)?;
        let record = Arc::new(Record {
            name,
            daemon: self.daemon,
            process: spawned.process,
            lifeline: Mutex::new(Some(spawned.channel)),
        });
        children().push(record.clone());
        self.started = Some(record);
        Ok(())
    }

    /// The child's pid; `None` before [`start`](Process::start).
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let mut p = multiproc::Process::new(work, ());
    /// assert_eq!(p.pid(), None);
    /// p.start()?;
    /// assert!(p.pid().is_some());
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.started.as_ref().map(|r| r.process.pid())
    }

    fn record(&self, what: &'static str) -> Result<&Arc<Record>, Error> {
        self.started.as_ref().ok_or(Error::State(if self.closed { CLOSED } else { what }))
    }

    /// A descriptor that becomes readable when the child ends (Python's `sentinel`): its
    /// pidfd, for an event loop or `poll` watching several processes and other
    /// descriptors at once. `None` before [`start`](Process::start) and after
    /// [`close`](Process::close). Reading it is not reaping: [`join`](Process::join) (or
    /// [`exitcode`](Process::exitcode)) still does that.
    ///
    /// ```
    /// use rustix::event::{PollFd, PollFlags, poll};
    ///
    /// fn quick(_: ()) {}
    ///
    /// multiproc::init();
    /// let mut p = multiproc::Process::new(quick, ());
    /// assert!(p.sentinel().is_none());
    /// p.start()?;
    /// let sentinel = p.sentinel().unwrap();
    /// let mut fds = [PollFd::new(&sentinel, PollFlags::IN)];
    /// poll(&mut fds, None)?; // returns once the child has ended
    /// assert_eq!(p.exitcode(), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sentinel(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.started.as_ref().map(|r| r.process.pidfd())
    }

    /// Releases what this handle keeps for an ended child (its pidfd among them), as
    /// Python's `close()`; afterwards the handle only answers [`Error::State`] (and
    /// `None`). Fails, changing nothing, while the child runs: [`join`](Process::join)
    /// or [`kill`](Process::kill) it first. Closing a process never started is allowed.
    ///
    /// ```
    /// fn quick(_: ()) {}
    ///
    /// multiproc::init();
    /// let mut p = multiproc::Process::new(quick, ());
    /// p.start()?;
    /// p.join()?;
    /// p.close()?;
    /// assert!(p.sentinel().is_none());
    /// assert!(p.join().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&mut self) -> Result<(), Error> {
        if let Some(r) = &self.started
            && r.poll().is_none()
        {
            return Err(Error::State("cannot close a process while it is still running; join or kill it first"));
        }
        self.started = None;
        self.target = None;
        self.closed = true;
        Ok(())
    }

    /// Waits for the child to end.
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let mut p = multiproc::Process::new(work, ());
    /// p.start()?;
    /// p.join()?;
    /// assert_eq!(p.exitcode(), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(&self) -> Result<(), Error> {
        let r = self.record("can only join a started process")?;
        r.process.wait()?;
        r.poll();
        Ok(())
    }

    /// Waits up to `timeout` for the child to end; returns whether it has.
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// use std::time::Duration;
    /// let mut p = multiproc::Process::new(work, ());
    /// p.start()?;
    /// assert!(p.join_timeout(Duration::from_secs(30))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, Error> {
        let r = self.record("can only join a started process")?;
        let ended = r.process.wait_timeout(Some(timeout))?.is_some();
        if ended {
            r.poll();
        }
        Ok(ended)
    }

    /// Whether the child has started and not yet ended.
    ///
    /// ```
    /// multiproc::init();
    /// fn work(_: ()) {}
    ///
    /// let mut p = multiproc::Process::new(work, ());
    /// assert!(!p.is_alive());
    /// p.start()?;
    /// p.join()?;
    /// assert!(!p.is_alive());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        self.started.as_ref().is_some_and(|r| r.poll().is_none())
    }

    /// The exit code once the child has ended: 0 for success, 1 after a panic, the code
    /// given to `exit`, or `-N` if signal N ended it. `None` while it runs or before start.
    ///
    /// ```
    /// multiproc::init();
    /// fn exit3(_: ()) { std::process::exit(3) }
    ///
    /// let mut p = multiproc::Process::new(exit3, ());
    /// p.start()?;
    /// p.join()?;
    /// assert_eq!(p.exitcode(), Some(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn exitcode(&self) -> Option<i32> {
        self.started.as_ref().and_then(|r| r.poll())
    }

    /// Asks the child to stop with SIGTERM. A no-op once it has ended.
    ///
    /// ```
    /// multiproc::init();
    /// fn forever(_: ()) { loop { std::thread::park() } }
    ///
    /// let mut p = multiproc::Process::new(forever, ());
    /// p.start()?;
    /// p.terminate()?;
    /// p.join()?;
    /// assert_eq!(p.exitcode(), Some(-15));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn terminate(&self) -> Result<(), Error> {
        let r = self.record("can only terminate a started process")?;
        Ok(r.process.signal(libc::SIGTERM)?)
    }

    /// Kills the child with SIGKILL. A no-op once it has ended.
    ///
    /// ```
    /// multiproc::init();
    /// fn forever(_: ()) { loop { std::thread::park() } }
    ///
    /// let mut p = multiproc::Process::new(forever, ());
    /// p.start()?;
    /// p.kill()?;
    /// p.join()?;
    /// assert_eq!(p.exitcode(), Some(-9));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kill(&self) -> Result<(), Error> {
        let r = self.record("can only kill a started process")?;
        Ok(r.process.signal(libc::SIGKILL)?)
    }
}

/// Dropping the handle of a running child lets it run on, as in Python; it is reaped
/// when it ends (or joined at exit, if it is not daemonic), nothing left behind.
impl Drop for Process {
    fn drop(&mut self) {
        if let Some(record) = self.started.take()
            && record.poll().is_none()
        {
            REAPER.adopt(record);
        }
    }
}

/// The child side of a `Process`: decode the function and argument, run, exit.
fn process_entry<F, A>(ctx: ChildContext)
where
    F: Fn(A) + Copy + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
{
    let ChildContext { channel, payload, fds } = ctx;
    let (offset, arg): (i64, A) = match crate::wire::fds::with_incoming(fds, || codec::decode(&payload)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("Process {}: {e}", spawn::identity().name);
            std::process::exit(1);
        }
    };
    drop(payload);
    #[cfg(feature = "sandbox")]
    if let Err(e) = crate::isolation::sandbox::enter(|m| m.as_bytes().to_vec(), None) {
        eprintln!("Process {}: {e}", spawn::identity().name);
        std::process::exit(1);
    }
    // The parent made `offset` with `encode_fn::<F, fn(A)>`.
    let f: F = spawn::identity::SameBuild::parent().decode_fn::<F>(offset);
    watch_parent(channel);
    let name = spawn::identity().name.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("Process {name} (pid {}):", std::process::id());
        default_hook(info);
        // A refusal of the sandbox's Landlock rules or private network: say which rule.
        #[cfg(feature = "sandbox")]
        {
            // (`PanicHookInfo::payload_as_str` would need Rust 1.91; the minimum is 1.88.)
            let payload = info.payload();
            let text = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if let Some(why) = crate::isolation::sandbox::explain(text.unwrap_or_default()) {
                eprintln!("{why}");
            }
        }
    }));
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(arg))).is_err() {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }
}

/// Ends this child when its parent's end of the socket closes (the parent died),
/// backing up `PR_SET_PDEATHSIG`.
fn watch_parent(mut channel: Channel) {
    let _ = std::thread::Builder::new().name("multiproc-lifeline".into()).spawn(move || {
        loop {
            match channel.recv(None) {
                Ok(_) => continue,
                Err(_) => sys::proc::exit_now(1),
            }
        }
    });
}

/// A description of a process: its name, pid and whether it is daemonic.
///
/// ```
/// use multiproc::{Process, current_process};
///
/// fn report(_: ()) {
///     let me = current_process();
///     assert_eq!(me.pid(), std::process::id());
///     assert!(multiproc::parent_process().is_some());
/// }
///
/// multiproc::init();
/// let me = current_process();
/// assert!(me.is_alive());
/// let mut child = Process::new(report, ()).name("reporter");
/// child.start()?;
/// child.join()?;
/// assert_eq!(child.exitcode(), Some(0));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
    daemon: bool,
    relation: Relation,
}

/// How a described process is related to this one: what `is_alive` can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    Me,
    Parent,
    Child,
}

impl ProcessInfo {
    /// The process's name ("MainProcess" for a program not started by multiproc).
    ///
    /// ```
    /// multiproc::init();
    /// println!("I am {}", multiproc::current_process().name());
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its process id.
    ///
    /// ```
    /// multiproc::init();
    /// assert_eq!(multiproc::current_process().pid(), std::process::id());
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Whether it is daemonic.
    ///
    /// ```
    /// multiproc::init();
    /// assert!(!multiproc::current_process().daemon());
    /// ```
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// Whether the process is still running, as Python's `is_alive()`: always for
    /// [`current_process()`]; for [`parent_process()`], whether it is still this
    /// process's parent; for an entry of [`active_children()`], whether that child has
    /// not ended (an ended one is reaped).
    ///
    /// ```
    /// multiproc::init();
    /// assert!(multiproc::current_process().is_alive());
    /// ```
    pub fn is_alive(&self) -> bool {
        match self.relation {
            Relation::Me => true,
            Relation::Parent => sys::proc::getppid() == self.pid,
            Relation::Child => {
                let record = children().iter().find(|r| r.process.pid() == self.pid).cloned();
                record.is_some_and(|r| r.poll().is_none())
            }
        }
    }
}

/// This process: "MainProcess" in a program you started, the given or default name
/// (`Process-N`) in a child.
///
/// ```
/// multiproc::init();
/// let me = multiproc::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// ```
pub fn current_process() -> ProcessInfo {
    let id = spawn::identity();
    ProcessInfo { name: id.name.clone(), pid: sys::proc::getpid(), daemon: id.daemon, relation: Relation::Me }
}

/// The process that started this one, if multiproc started it.
///
/// ```
/// multiproc::init();
/// assert!(multiproc::parent_process().is_none()); // a program you ran yourself
/// ```
pub fn parent_process() -> Option<ProcessInfo> {
    spawn::identity().parent.as_ref().map(|(name, pid)| ProcessInfo {
        name: name.clone(),
        pid: *pid,
        daemon: false,
        relation: Relation::Parent,
    })
}

/// The children of this process that are still running; finished ones are reaped.
///
/// ```
/// multiproc::init();
/// assert!(multiproc::active_children().is_empty());
/// ```
pub fn active_children() -> Vec<ProcessInfo> {
    let list: Vec<Arc<Record>> = children().clone();
    list.into_iter()
        .filter(|r| r.poll().is_none())
        .map(|r| ProcessInfo {
            name: r.name.clone(),
            pid: r.process.pid(),
            daemon: r.daemon,
            relation: Relation::Child,
        })
        .collect()
}

/// How many CPUs this process may use: the size of its CPU affinity mask.
///
/// ```
/// assert!(multiproc::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    sys::proc::cpu_count()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::net::UnixStream;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::*;

    /// A socket that travels inside an argument, its descriptor beside the frame.
    struct Sock(UnixStream);

    impl Serialize for Sock {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u32(crate::wire::fds::attach(self.0.as_fd()).map_err(serde::ser::Error::custom)?)
        }
    }

    impl<'de> Deserialize<'de> for Sock {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sock, D::Error> {
            let fd: OwnedFd = crate::wire::fds::take(u32::deserialize(d)?).map_err(serde::de::Error::custom)?;
            Ok(Sock(UnixStream::from(fd)))
        }
    }

    fn echo_upper((mut sock, word): (Sock, String)) {
        sock.0.write_all(word.to_uppercase().as_bytes()).unwrap();
    }

    #[test]
    fn a_descriptor_inside_the_argument_reaches_the_child() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let mut p = Process::new(echo_upper, (Sock(theirs), "hello".to_string()));
        p.start().unwrap();
        let mut got = String::new();
        // `theirs` was consumed by `start` (encoded and sent); the child's copy closes
        // when it exits, so reading to the end terminates.
        ours.read_to_string(&mut got).unwrap();
        p.join().unwrap();
        assert_eq!(got, "HELLO");
        assert_eq!(p.exitcode(), Some(0));
    }
}
