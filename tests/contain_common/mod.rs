//! Helpers of the containment tests (tests/contain_*.rs): a task that starts a process
//! which escapes its parent in one of four ways, and a wait for such a process to be gone.
//! Every check waits on a pidfd with a generous deadline: no sleep stands for a wait.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use multiproc::{Connection, Contain, Containment, Pool, Process};

/// How long a process killed by containment may take to be gone: generous, the machine is shared.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Starts a `sleep 300` that escapes its starter `way`s, and returns its pid:
/// - `fork`: a plain child, never waited for;
/// - `double_fork`: a child of a shell that exits at once (the sleep is orphaned);
/// - `setsid`: a child that starts a new session (and process group) of its own;
/// - `daemon`: a daemon as the books make it: fork, setsid, fork again, the middle one
///   exits, `cd /`, stdio to /dev/null.
pub fn escape(way: String) -> u32 {
    let script = match way.as_str() {
        "fork" => {
            // Never waited for on purpose: the escaper under test.
            #[allow(clippy::zombie_processes)]
            let child = Command::new("sleep").arg("300").stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
            return child.id();
        }
        "double_fork" => "sleep 300 >/dev/null & echo $!",
        "setsid" => "setsid sh -c 'echo $$; exec sleep 300 >/dev/null' &",
        "daemon" => {
            "setsid sh -c 'sh -c \"$1\" & exit 0' daemon 'echo $$; cd /; exec sleep 300 </dev/null >/dev/null 2>&1' &"
        }
        other => panic!("no way to escape called {other}"),
    };
    let mut sh = Command::new("sh").arg("-c").arg(script).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = String::new();
    // Every writer of the pipe closes it (the escaper's stdout is /dev/null): end of file.
    sh.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    sh.wait().unwrap();
    let pid: u32 = out.trim().lines().last().unwrap_or_default().parse().unwrap_or_else(|_| panic!("{out:?}"));
    assert!(alive(pid), "the escaper {pid} ({way}) is not running");
    pid
}

/// Starts an escaper, sends its pid over `conn`, then hangs: a task its timeout ends.
pub fn escape_and_hang((conn, way): (Connection<u32>, String)) -> u32 {
    conn.send(escape(way)).unwrap();
    loop {
        std::thread::park();
    }
}

/// The owner of a pool, in a process of its own: builds the pool, has a task start an
/// escaper, sends its pid over `conn`, then waits to be SIGKILLed.
pub fn owner((conn, way, contain): (Connection<u32>, String, String)) {
    let pool = pool_of_one(parse_contain(&contain));
    conn.send(pool.apply(escape, way).unwrap()).unwrap();
    loop {
        std::thread::park();
    }
}

/// A `Process` target: starts an escaper, sends its pid, returns.
pub fn escape_and_return((conn, way): (Connection<u32>, String)) {
    conn.send(escape(way)).unwrap();
}

/// A pool of one worker, contained as `contain` says.
pub fn pool_of_one(contain: Contain) -> Pool {
    let pool = Pool::builder().processes(1).contain(contain).build().unwrap();
    let expected = match contain {
        Contain::ProcessTree => Some(Containment::ProcessTree),
        Contain::Cgroup => Some(Containment::Cgroup),
        _ => None,
    };
    let reported = pool.stats().containment;
    assert!(expected.is_none_or(|e| e == reported), "asked {contain:?}, in effect {reported:?}");
    assert_ne!(reported, Containment::Off, "a pool's workers are contained by default");
    pool
}

pub fn parse_contain(s: &str) -> Contain {
    match s {
        "cgroup" => Contain::Cgroup,
        "auto" => Contain::Auto,
        "process-tree" => Contain::ProcessTree,
        "off" => Contain::Off,
        other => panic!("no containment called {other}"),
    }
}

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// Waits until `pid` has ended, through its pidfd; panics after [`DEADLINE`].
pub fn wait_gone(pid: u32, what: &str) {
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else { return };
    let fd = match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return,
        Err(e) => panic!("pidfd_open({pid}): {e}"),
    };
    let ts = rustix::event::Timespec { tv_sec: DEADLINE.as_secs() as i64, tv_nsec: 0 };
    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let n = rustix::event::poll(&mut fds, Some(&ts)).unwrap();
    assert!(n == 1 || !alive(pid), "{what}: the escaper {pid} still runs after {DEADLINE:?}");
}

/// Starts `owner` in an uncontained child, which sends the pids of what it started (its
/// pools' processes, what their tasks started) and waits; then SIGKILLs it: each of those
/// pids must be gone.
pub fn nothing_outlives_a_killed_owner(owner: fn(Connection<Vec<u32>>), what: &str) {
    let (ours, theirs) = multiproc::Pipe::simplex::<Vec<u32>>().unwrap();
    let mut owner = Process::new(owner, theirs).contain(Contain::Off);
    owner.start().unwrap();
    let pids = ours.recv().unwrap();
    owner.kill().unwrap();
    owner.join().unwrap();
    for pid in pids {
        wait_gone(pid, what);
    }
}

/// A pool of one worker, contained as `contain` says, runs `escape(way)`; after `close`
/// and `join` the escaper is gone.
pub fn pool_close_join(way: &str, contain: Contain) {
    let pool = pool_of_one(contain);
    let pid = pool.apply(escape, way.to_string()).unwrap();
    pool.close();
    pool.join().unwrap();
    wait_gone(pid, &format!("{way}, pool closed and joined ({contain:?})"));
}

/// A task starts an escaper and hangs; its timeout kills the worker, and the escaper with it.
pub fn pool_timeout(way: &str, contain: Contain) {
    let pool = pool_of_one(contain);
    let (ours, theirs) = multiproc::Pipe::simplex::<u32>().unwrap();
    let opts = multiproc::TaskOptions::new().timeout(Duration::from_secs(2));
    let r = pool.apply_async_with(escape_and_hang, (theirs, way.to_string()), opts);
    let pid = ours.recv().unwrap();
    let err = r.get().unwrap_err();
    assert!(matches!(err, multiproc::TaskError::Timeout { .. }), "{err}");
    wait_gone(pid, &format!("{way}, task timed out ({contain:?})"));
}

/// The pool's owner, a child process, is SIGKILLed: the escaper dies too.
pub fn owner_killed(way: &str, contain: &str) {
    let (ours, theirs) = multiproc::Pipe::simplex::<u32>().unwrap();
    // The owner itself is not contained: only the pool's containment is under test.
    let mut p = Process::new(owner, (theirs, way.to_string(), contain.to_string())).contain(Contain::Off);
    p.start().unwrap();
    let pid = ours.recv().unwrap();
    p.kill().unwrap();
    p.join().unwrap();
    wait_gone(pid, &format!("{way}, owner SIGKILLed ({contain})"));
}

/// A `Process` child starts an escaper and returns: the escaper dies with it.
pub fn process_returns(way: &str, contain: Contain) {
    let (ours, theirs) = multiproc::Pipe::simplex::<u32>().unwrap();
    let mut p = Process::new(escape_and_return, (theirs, way.to_string())).contain(contain);
    p.start().unwrap();
    let pid = ours.recv().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    wait_gone(pid, &format!("{way}, Process returned ({contain:?})"));
}

/// This process's cgroup v2 directory (where a pool's cgroups are made), if any.
pub fn own_cgroup_dir() -> Option<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(std::path::PathBuf::from))?
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim_start_matches('/').to_string();
    Some(mount.join(own))
}

/// The cgroups of process `pid` still present under `base`.
pub fn cgroups_of(base: &std::path::Path, pid: u32) -> Vec<String> {
    let prefix = format!("multiproc-{pid}-");
    let Ok(dir) = std::fs::read_dir(base) else { return Vec::new() };
    dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(&prefix)).collect()
}
