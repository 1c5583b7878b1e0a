//! Containing a child's descendants: cgroup v2 subtrees, process groups, the child
//! subreaper, walking and killing a process tree, and the guard process.
//!
//! The policy (which mechanism, when) is `crate::isolation`; these are the mechanics.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

/// The mount point of the cgroup v2 hierarchy, from `/proc/self/mountinfo`.
pub(crate) fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        // `... mountpoint options ... - fstype source superoptions`
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// This process's cgroup v2 path (relative to the hierarchy's root), from `/proc/self/cgroup`.
pub(crate) fn own_cgroup() -> Option<String> {
    let s = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    s.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim_start_matches('/').to_string())
}

/// Whether this process may create a child cgroup under `dir` and move processes there:
/// `dir` must be writable (a directory on a read-write mount this process may write
/// to), the kernel must offer `cgroup.kill` (Linux 5.14), and `dir`'s `cgroup.procs` must
/// be writable (a move, or a creation inside, needs the common ancestor's). A cgroup
/// other than the root has a `cgroup.kill` of its own where the kernel has it; under the
/// root, which has none, a probe directory is made and removed instead.
pub(crate) fn cgroup_writable(dir: &Path) -> io::Result<()> {
    if dir.join("cgroup.kill").exists() {
        rustix::fs::access(dir, rustix::fs::Access::WRITE_OK)?;
    } else {
        let probe = dir.join(format!("multiproc-probe-{}", std::process::id()));
        std::fs::create_dir(&probe)?;
        let kill = probe.join("cgroup.kill").exists();
        let _ = std::fs::remove_dir(&probe);
        if !kill {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "no cgroup.kill (Linux 5.14 or later is needed)"));
        }
    }
    std::fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs")).map(drop)
}

/// Creates the cgroup directory `dir`.
pub(crate) fn cgroup_create(dir: &Path) -> io::Result<()> {
    std::fs::create_dir(dir)
}

/// Opens the cgroup directory `dir`, for a child to be created in it (`sys::clone`).
pub(crate) fn cgroup_open(dir: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

/// Moves process `pid` into the cgroup `dir` (the kernel may wait for an RCU grace
/// period: milliseconds; a child created in its cgroup avoids it).
pub(crate) fn cgroup_add(dir: &Path, pid: u32) -> io::Result<()> {
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())
}

/// SIGKILLs every process in the cgroup `dir` and its sub-cgroups, at once (`cgroup.kill`):
/// a process forking at that moment cannot escape it.
pub(crate) fn cgroup_kill(dir: &Path) -> io::Result<()> {
    match std::fs::write(dir.join("cgroup.kill"), "1") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes the cgroup `dir` if nothing is in it: `Ok(true)` once it is gone (removed
/// now, or already), `Ok(false)` while a process or a sub-cgroup keeps it. The kernel
/// refuses to remove a populated cgroup, so `true` proves that nothing was left in it and
/// that nothing can enter it any more: no `cgroup.kill` is needed.
pub(crate) fn cgroup_remove_if_empty(dir: &Path) -> io::Result<bool> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether any process is left in the cgroup `dir` (a missing cgroup has none).
pub(crate) fn cgroup_populated(dir: &Path) -> bool {
    match std::fs::read_to_string(dir.join("cgroup.events")) {
        Ok(s) => s.lines().any(|l| l == "populated 1"),
        Err(_) => false,
    }
}

/// Removes the cgroup `dir` once it is empty, waiting up to `patience` for the processes
/// that `cgroup_kill` signalled to be gone (the kernel notifies `cgroup.events` changes).
pub(crate) fn cgroup_remove(dir: &Path, patience: Duration) -> io::Result<()> {
    // Most often it is empty and has no sub-cgroup already: one `rmdir` does it.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let deadline = Instant::now() + patience;
    let events = std::fs::File::open(dir.join("cgroup.events"));
    while cgroup_populated(dir) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
        let Ok(events) = &events else { break };
        let mut fds = [PollFd::new(events, PollFlags::PRI)];
        let slice = left.min(Duration::from_millis(100));
        let ts = Timespec { tv_sec: slice.as_secs() as i64, tv_nsec: slice.subsec_nanos() as i64 };
        let _ = rustix::event::poll(&mut fds, Some(&ts));
    }
    remove_dirs(dir)
}

/// Removes the cgroup `dir` and the cgroups under it if none holds a process (the kernel
/// refuses to remove a populated one, so nothing is killed or lost); `Err` while one does.
pub(crate) fn cgroup_remove_empty_tree(dir: &Path) -> io::Result<()> {
    remove_dirs(dir)
}

/// Removes an empty cgroup and the cgroups under it (a child's own children's, whose
/// guards the kill took), deepest first.
fn remove_dirs(dir: &Path) -> io::Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = remove_dirs(&e.path());
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The `cgroup.procs` of the cgroup above this contained child's, where the crate's own
/// helper processes go so that they outlive the child (the shared-memory unlinker, which
/// must run after it).
static HELPERS_GO_TO: OnceLock<std::ffi::CString> = OnceLock::new();

/// The cgroup above this contained child's, where its helpers go.
static HELPERS_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The cgroup where this contained child's helpers go, open (for `sys::clone::fork_raw`),
/// if the child is in one and it can be opened.
pub(crate) fn helpers_cgroup_dir() -> Option<OwnedFd> {
    cgroup_open(HELPERS_DIR.get()?).ok()
}

/// In a child contained by a cgroup: its helpers leave it for `parent`.
pub(crate) fn set_helpers_cgroup(parent: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let _ = HELPERS_DIR.set(parent.to_path_buf());
    if let Ok(path) = std::ffi::CString::new(parent.join("cgroup.procs").as_os_str().as_bytes()) {
        let _ = HELPERS_GO_TO.set(path);
    }
}

/// Where a helper process of the crate moves itself out of this child's cgroup, if the
/// child is in one: read before a fork, used after it with [`leave_cgroup`].
pub(crate) fn helpers_cgroup() -> Option<&'static std::ffi::CStr> {
    HELPERS_GO_TO.get().map(|c| c.as_c_str())
}

/// Moves the calling process to the cgroup whose `cgroup.procs` is `procs` (writing 0
/// moves the writer). Async-signal-safe: for a freshly forked helper.
pub(crate) fn leave_cgroup(procs: &std::ffi::CStr) {
    // SAFETY: `procs` is a NUL-terminated path; open, write of a local byte and close are
    // async-signal-safe and touch only the descriptor opened here.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }
}

/// Makes this process a child subreaper: its orphaned descendants are re-parented to it,
/// not to init, so they stay in its tree.
pub(crate) fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: `prctl(PR_SET_CHILD_SUBREAPER, 1)` takes plain integers and changes only a
    // flag of this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Makes this process the leader of a new process group, which its children join.
pub(crate) fn own_process_group() -> io::Result<()> {
    rustix::process::setpgid(None, None)?;
    Ok(())
}

/// Sends `sig` to every process of group `pgid`; a group with no process left is fine.
pub(crate) fn kill_group(pgid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: `kill` takes plain integers; a negative pid names a process group.
    let rc = unsafe { libc::kill(-(pgid as libc::pid_t), sig) };
    if rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `sig` to process `pid`; a process already gone is fine.
pub(crate) fn kill_pid(pid: u32, sig: i32) {
    // SAFETY: `kill` takes plain integers; `pid` is positive, so it names one process.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Every process's parent, from `/proc/<pid>/stat` (the kernel offers no cheaper way
/// without `CONFIG_PROC_CHILDREN`).
fn parents() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return map };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The command name may hold spaces and parentheses: the fields follow the last ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
        if let Some(ppid) = ppid {
            map.insert(pid, ppid);
        }
    }
    map
}

/// The descendants of `root` now living (not `root` itself), found through their parents.
pub(crate) fn descendants(root: u32) -> Vec<u32> {
    let parents = parents();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &ppid) in &parents {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// Kills `root`'s descendants (not `root`) without letting any escape: each one found is
/// stopped first (a stopped process cannot fork), the walk repeats until it finds no new
/// one, then all are SIGKILLed. `root` itself should be stopped or be the caller.
pub(crate) fn kill_descendants(root: u32) {
    let mut seen: HashSet<u32> = HashSet::new();
    for _ in 0..64 {
        let found: Vec<u32> = descendants(root).into_iter().filter(|p| !seen.contains(p)).collect();
        if found.is_empty() {
            break;
        }
        for &p in &found {
            kill_pid(p, libc::SIGSTOP);
            seen.insert(p);
        }
    }
    for &p in &seen {
        kill_pid(p, libc::SIGKILL);
    }
}

/// Stops `pid`, kills its descendants, then kills it: the tree of a process that is not
/// in a cgroup of its own, before its orphans would be lost to init.
pub(crate) fn kill_tree(pid: u32) {
    kill_pid(pid, libc::SIGSTOP);
    kill_descendants(pid);
    kill_pid(pid, libc::SIGKILL);
}

/// Whether this process has any child, running or ended (quiet ones included). A child
/// subreaper without one has no descendant at all: every orphan of its tree would have
/// been re-parented to it.
pub(crate) fn has_children() -> bool {
    // SAFETY: `waitid` writes only the local `info`; WNOWAIT leaves any ended child
    // unreaped, WNOHANG makes it return at once.
    let rc = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL)
    };
    !(rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
}

/// Reaps every child of this process that has ended, without waiting.
pub(crate) fn reap_any() {
    loop {
        // SAFETY: `waitpid(-1, null, WNOHANG)` reaps an ended child if there is one; the
        // null status pointer is allowed.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}

/// Whether the child behind `pidfd` has ended, without reaping it: its zombie keeps its
/// pid (and its process group's number) from being reused while the caller cleans up.
pub(crate) fn has_exited(pidfd: BorrowedFd<'_>) -> bool {
    use rustix::process::{WaitId, WaitIdOptions};
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    matches!(rustix::process::waitid(WaitId::PidFd(pidfd), opts), Ok(Some(_)))
}

/// A pidfd for `pid` (this file stays below `proc.rs`, whose exit runs its clean-up).
fn pidfd_of(pid: u32) -> io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))?;
    Ok(rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?)
}

/// Ends the guard (or the fork before it) at once, without exit handlers: they are the
/// guarded process's.
fn quit(code: i32) -> ! {
    // SAFETY: `_exit` takes a plain integer and ends the process; always sound.
    unsafe { libc::_exit(code) }
}

/// What the guard does once the process it watches has ended.
#[derive(Debug, Clone)]
pub(crate) enum GuardAction {
    /// Kill the cgroup (after leaving it for `parent`) and remove it, unless `owner` (a
    /// pid: the watched process's parent, which does the same when it sees the end) has
    /// removed it within [`OWNER_GRACE`]; at once if `owner` ends first.
    Cgroup { dir: PathBuf, parent: PathBuf, owner: u32 },
    /// Kill the watched process's group; if `owner` (a pid) ends first, kill the watched
    /// process's whole tree (it is stopped by then: see `isolation`).
    Tree { pid: u32, owner: u32 },
}

/// Starts the guard: a small process, not this one's child in any way this process's own
/// code could notice, that waits for this process to end for any reason — a kill by its
/// pool, the death of its owner — and then runs `action`. Call it while this process has
/// a single thread.
///
/// With [`GuardAction::Cgroup`], the guard is created inside the parent cgroup (`clone3`
/// with `CLONE_INTO_CGROUP`), so it never is in this process's cgroup, and as a quiet
/// child (no SIGCHLD; a `wait()` of a task does not see it): nothing waits for it, it is
/// in place when this returns, and when this process ends it goes to init. Otherwise (the
/// process tree, or where `clone3` is refused) it is detached by a double fork, so it is
/// never this process's child (the tree walk would find it), and this waits until it has
/// left this process's group and, with a cgroup, moved itself out of it.
pub(crate) fn spawn_guard(action: GuardAction) -> io::Result<()> {
    let me = pidfd_of(std::process::id())?;
    let owner = match &action {
        GuardAction::Tree { owner, .. } => Some(pidfd_of(*owner)?),
        // An owner already gone (its pid unknown to `pidfd_open`) leaves the clean-up to
        // the guard alone, at once: as if it had died while the guard waited.
        GuardAction::Cgroup { owner, .. } => pidfd_of(*owner).ok(),
    };
    let null: OwnedFd = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?.into();
    let into = match &action {
        GuardAction::Cgroup { parent, .. } => cgroup_open(parent).ok(),
        GuardAction::Tree { .. } => None,
    };
    if let Some(dir) = &into {
        // SAFETY: the caller has one thread (`threads()` is checked by the policy before
        // it calls this), so the child may run any code.
        match unsafe { super::clone::fork_raw(Some(dir.as_fd()), true) } {
            Ok(0) => guard_main([Some(me), owner], null, None, action, false),
            Ok(_) => return Ok(()),
            Err(e) if super::clone::refused(&e) => {}
            Err(e) => return Err(e),
        }
    }
    drop(into);
    // The guard says on this pipe when it is ready (out of this process's cgroup or
    // group): until then a kill of either would take it too.
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: as above.
    let first = unsafe { libc::fork() };
    match first {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // SAFETY: as above; this intermediate child forks once more and exits.
            if unsafe { libc::fork() } == 0 {
                drop(ready_r);
                guard_main([Some(me), owner], null, Some(ready_w), action, true)
            }
            quit(0)
        }
        pid => {
            // SAFETY: reaps the intermediate child just forked (it exits at once); the null
            // status pointer is allowed.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            drop(ready_w);
            let mut byte = [0u8; 1];
            loop {
                match rustix::io::read(&ready_r, &mut byte) {
                    Ok(1) => return Ok(()),
                    Err(rustix::io::Errno::INTR) => continue,
                    _ => return Err(io::Error::other("the containment guard did not start")),
                }
            }
        }
    }
}

/// The guard: `watched` is the pidfd of the process it guards, then its owner's if known;
/// `join` says it must still move itself to its action's parent cgroup.
fn guard_main(
    watched: [Option<OwnedFd>; 2],
    null: OwnedFd,
    ready: Option<OwnedFd>,
    action: GuardAction,
    join: bool,
) -> ! {
    let _ = rustix::process::setsid();
    let _ = rustix::thread::set_name(c"multiproc-guard");
    // Not a tree guard: it kills a process group by number, which must not wait while
    // the number could be freed and reused.
    if matches!(action, GuardAction::Cgroup { .. }) {
        idle_priority();
    }
    // Stdio to /dev/null and every other descriptor closed but the pidfds: a guard must
    // not keep the worker's socket or a test's pipes open.
    for fd in 0..3 {
        let _ = dup2(null.as_fd(), fd);
    }
    drop(null);
    if let GuardAction::Cgroup { parent, .. } = &action
        && join
        && cgroup_add(parent, std::process::id()).is_err()
    {
        quit(1);
    }
    if let Some(ready) = ready {
        let _ = rustix::io::write(&ready, &[1]);
    }
    let [Some(child), owner] = watched else { quit(1) };
    close_all_but(&[Some(child.as_raw_fd()), owner.as_ref().map(|o| o.as_raw_fd())]);
    // A cgroup guard acts only once the child has ended (the owner's pidfd serves the
    // wait after it); a tree guard acts at the first of the two ends.
    let owner_ends_the_wait = matches!(action, GuardAction::Tree { .. });
    let child_ended = loop {
        let mut fds = vec![PollFd::new(&child, PollFlags::IN)];
        fds.extend(owner.iter().filter(|_| owner_ends_the_wait).map(|o| PollFd::new(o, PollFlags::IN)));
        if let Ok(n) = rustix::event::poll(&mut fds, None)
            && n > 0
        {
            break !fds[0].revents().is_empty();
        }
    };
    match action {
        GuardAction::Cgroup { dir, .. } => {
            if !left_to_owner(&dir, owner.as_ref()) {
                let _ = cgroup_kill(&dir);
                let _ = cgroup_remove(&dir, Duration::from_secs(10));
            }
        }
        GuardAction::Tree { pid, .. } => {
            if !child_ended {
                kill_tree(pid);
            }
            let _ = kill_group(pid, libc::SIGKILL);
        }
    }
    quit(0)
}

/// Starts the guard of a whole subtree of cgroups, `dir` (a fork server's: every worker
/// it forks has its cgroup under it), for the owner `owner` (a pid: this process's
/// parent). One process instead of one per child: it waits until the owner dies or
/// closes the other end of `closed` (when it is done with the subtree), then until this
/// process (the template, which may still be creating `dir`) has ended too, and then
/// kills whatever is left in `dir` and removes it with every cgroup under it. An owner
/// that closes `closed` has removed the subtree itself: the guard finds nothing to do.
/// Returns the guard's pid and a pidfd of it, by which the owner sees it die (a task
/// may SIGKILL it: the owner then has another started at once).
///
/// Created as a quiet child of this process (no SIGCHLD, never waited for while it
/// lives: [`reap_ended`] takes it once it is dead) in this process's own cgroup, never
/// in `dir`; it keeps no descriptor but the three it watches. Call it while this process
/// has a single thread, before creating `dir` if it is not made yet.
pub(crate) fn spawn_subtree_guard(dir: &Path, owner: u32, closed: OwnedFd) -> io::Result<(u32, OwnedFd)> {
    let owner = pidfd_of(owner)?;
    let template = pidfd_of(std::process::id())?;
    let null: OwnedFd = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?.into();
    // SAFETY: the caller has one thread, so the child may run any code.
    match unsafe { super::clone::fork_raw(None, true) }? {
        0 => subtree_guard_main(dir, [owner, closed, template], null),
        // Not reaped, the child keeps its pid until `reap_ended`: this pidfd is its own.
        pid => Ok((pid, pidfd_of(pid)?)),
    }
}

/// Reaps this process's child `pid` if it has ended (a quiet one included), without
/// waiting.
pub(crate) fn reap_ended(pid: u32) {
    // SAFETY: `waitpid` with WNOHANG returns at once; the null status pointer is allowed;
    // `__WALL` lets it see a quiet child, which this process started (`pid` is its own).
    unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG | libc::__WALL) };
}

/// Whether the process behind `pidfd` (any process, not only a child) has ended.
pub(crate) fn pidfd_ended(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let now = Timespec { tv_sec: 0, tv_nsec: 0 };
    matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(n) if n > 0)
}

/// The subtree guard (see [`spawn_subtree_guard`]): `watched` is the owner's pidfd, the
/// pipe its owner closes, and the template's pidfd.
fn subtree_guard_main(dir: &Path, watched: [OwnedFd; 3], null: OwnedFd) -> ! {
    let _ = rustix::process::setsid();
    let _ = rustix::thread::set_name(c"multiproc-guard");
    idle_priority();
    for fd in 0..3 {
        let _ = dup2(null.as_fd(), fd);
    }
    drop(null);
    let [owner, closed, template] = watched;
    close_all_but(&[Some(owner.as_raw_fd()), Some(closed.as_raw_fd()), Some(template.as_raw_fd())]);
    // A pipe's read end polls readable (end of file) once its last writer is gone.
    wait_any(&[&owner, &closed]);
    // The template dies with its owner (its parent-death signal), or was killed by it
    // before the close; once it is gone, nothing can create `dir` any more.
    wait_any(&[&template]);
    if dir.exists() {
        let _ = cgroup_kill(dir);
        let _ = cgroup_remove(dir, Duration::from_secs(10));
    }
    quit(0)
}

/// Waits until one of `fds` polls readable or hung up.
fn wait_any(fds: &[&OwnedFd]) {
    loop {
        let mut polled: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(*fd, PollFlags::IN)).collect();
        if let Ok(n) = rustix::event::poll(&mut polled, None)
            && n > 0
        {
            return;
        }
    }
}

/// How long a cgroup guard leaves its owner, still alive, to remove the cgroup of a
/// process that ended. The owner sees the end at the same moment and removes the cgroup
/// on its way to reaping the child (a `join` waits for that); a guard doing the same at
/// once only contends with it for the kernel's cgroup lock, on the critical path of
/// `join`. An owner that does not reap its child within this long (a `Process` never
/// joined) leaves the clean-up to the guard, as one that dies does.
pub(crate) const OWNER_GRACE: Duration = Duration::from_millis(20);

/// The watched process ended: whether its owner, alive, removed its cgroup `dir` within
/// [`OWNER_GRACE`] (the wait ends early if the owner dies; `owner` is its pidfd, `None`
/// when it was gone from the start).
fn left_to_owner(dir: &Path, owner: Option<&OwnedFd>) -> bool {
    let Some(owner) = owner else { return false };
    // No look first: at this moment the owner is removing the cgroup, and even a lookup
    // of its path would wait on the same kernel locks.
    let mut fds = [PollFd::new(owner, PollFlags::IN)];
    let ts = Timespec { tv_sec: 0, tv_nsec: OWNER_GRACE.as_nanos() as i64 };
    let owner_ended = matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0);
    !owner_ended && !dir.exists()
}

/// Puts the calling process in the idle scheduling class (`SCHED_IDLE`): woken, it never
/// preempts a process of the normal class. A cgroup guard wakes when its child ends,
/// which is when the owner reaps it (a pool's `join`); what it does then can wait for a
/// free CPU (a busy machine still gives an idle-class process a small share, so an
/// owner's death is still cleaned up).
fn idle_priority() {
    // SAFETY: `sched_param` is a plain struct, zeroed is valid (priority 0, the only one
    // SCHED_IDLE takes); `sched_setscheduler(0, ..)` changes only this process.
    unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}

fn dup2(from: BorrowedFd<'_>, to: i32) -> io::Result<()> {
    // SAFETY: `dup2` takes two descriptor numbers; `from` is open (borrowed), and `to` is a
    // stdio number that this process owns.
    let rc = unsafe { libc::dup2(from.as_raw_fd(), to) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Closes every descriptor from 3 up except those in `keep`.
fn close_all_but(keep: &[Option<i32>]) {
    let mut keep: Vec<u32> = keep.iter().flatten().map(|&k| k as u32).collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for k in keep.into_iter().chain([u32::MAX]) {
        if k > from {
            // SAFETY: `close_range` takes plain numbers; the range excludes stdio and every
            // kept descriptor, and the guard (a fresh, single-threaded process) owns every
            // descriptor in it.
            unsafe { libc::syscall(libc::SYS_close_range, from, k - 1, 0u32) };
        }
        from = from.max(k.saturating_add(1));
    }
}

/// Blocks signal `sig` in this thread (and the threads it starts later).
pub(crate) fn block_signal(sig: i32) -> io::Result<()> {
    // SAFETY: `sigemptyset`/`sigaddset` fill a local set; `pthread_sigmask` reads it and
    // changes only this thread's mask (the old mask pointer may be null).
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) }
}

/// Sets the signal this process gets when the thread that created it exits.
pub(crate) fn set_parent_death_signal(sig: i32) -> io::Result<()> {
    let sig = rustix::process::Signal::from_named_raw(sig)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unknown signal"))?;
    rustix::process::set_parent_process_death_signal(Some(sig))?;
    Ok(())
}

/// How many threads this process has.
pub(crate) fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_tree_is_found_through_proc() {
        let mut child = std::process::Command::new("sh").arg("-c").arg("sleep 30 & wait").spawn().unwrap();
        let me = std::process::id();
        let deadline = Instant::now() + Duration::from_secs(20);
        // The shell starts its sleep by itself: wait until the walk sees it under the
        // shell (not just any other descendant of this process: tests beside this one
        // start children of their own).
        while descendants(child.id()).is_empty() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        let grandchildren = descendants(child.id());
        let found = descendants(me);
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(!grandchildren.is_empty() && grandchildren.iter().all(|g| found.contains(g)), "{found:?}");
        kill_tree(child.id());
        child.wait().unwrap();
    }

    #[test]
    fn a_running_child_counts_as_a_child() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        assert!(has_children());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_guard_leaves_the_cgroup_to_a_living_owner_only_until_it_is_gone() {
        let dir = std::env::temp_dir().join(format!("multiproc-guard-test-{}", std::process::id()));
        let gone = dir.join("gone");
        std::fs::create_dir_all(&dir).unwrap();
        let owner = pidfd_of(std::process::id()).unwrap();
        // The owner removed it within the grace: nothing for the guard to do.
        assert!(left_to_owner(&gone, Some(&owner)));
        // The owner lives but did not remove it within the grace: the guard does it.
        assert!(!left_to_owner(&dir, Some(&owner)));
        // No owner known: the guard does it at once.
        assert!(!left_to_owner(&gone, None));
        // An owner that died: the guard does it, without waiting out the grace.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = pidfd_of(child.id()).unwrap();
        child.wait().unwrap();
        assert!(!left_to_owner(&dir, Some(&dead)));
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn the_mount_and_own_cgroup_are_read() {
        // Both may be missing on a machine without cgroup v2; when present they are paths.
        if let Some(m) = cgroup2_mount() {
            assert!(m.is_absolute());
            assert!(own_cgroup().is_some());
        }
    }
}
