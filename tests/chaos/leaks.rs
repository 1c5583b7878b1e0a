//! What a run may leave behind: child processes (running or zombie), processes of this
//! program that outlived their parent, descriptors, `/dev/shm` entries.

use std::collections::{BTreeMap, BTreeSet};

/// The descriptors and `/dev/shm` entries before a run.
#[derive(Debug, Clone)]
pub struct Snapshot {
    fds: BTreeMap<i32, String>,
    shm: BTreeSet<String>,
}

pub fn snapshot() -> Snapshot {
    Snapshot { fds: open_fds(), shm: shm_entries() }
}

fn open_fds() -> BTreeMap<i32, String> {
    let mut fds = BTreeMap::new();
    let listing = format!("/proc/{}/fd", std::process::id());
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let target = std::fs::read_link(entry.path()).map(|p| p.display().to_string()).unwrap_or_default();
        // read_dir's own descriptor, open while it lists.
        if target != listing {
            fds.insert(fd, target);
        }
    }
    fds
}

fn shm_entries() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// The `/dev/shm` entries some process has mapped.
fn mapped_shm() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(maps) = std::fs::read_to_string(entry.path().join("maps")) else { continue };
        for line in maps.lines() {
            if let Some(at) = line.find("/dev/shm/") {
                let name = line[at + "/dev/shm/".len()..].trim_end_matches(" (deleted)");
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// `(pid, state, name)` of every child of this process, zombies included.
pub fn children() -> Vec<(u32, char, String)> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Some((state, ppid, name)) = stat(pid) else { continue };
        if ppid == me {
            out.push((pid, state, name));
        }
    }
    out
}

/// The state, parent and name of `pid`, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u32, String)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (in parentheses, which may hold spaces).
    let name = s[s.find('(')? + 1..s.rfind(')')?].to_string();
    let mut rest = s[s.rfind(')')? + 2..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid, name))
}

/// Something a run left behind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leak {
    pub what: String,
    /// A zombie the run never saw as a worker (the signature of `drop_during_start`).
    pub unseen_zombie: bool,
}

/// Everything left behind since `before`: children, live processes of this program
/// among `pids` (orphans), new descriptors, new `/dev/shm` entries.
pub fn left_behind(before: &Snapshot, pids: &[u32]) -> Vec<Leak> {
    let mut found = Vec::new();
    for (pid, state, name) in children() {
        let what = if state == 'Z' { "a zombie" } else { "a child still running" };
        let seen = pids.contains(&pid);
        let this_run = if seen { "one of this run's" } else { "not seen by this run" };
        let what = format!("{what}: pid {pid} `{name}` (state {state}, {this_run})");
        found.push(Leak { what, unseen_zombie: state == 'Z' && !seen });
    }
    let mut found_other = Vec::new();
    let me = std::process::id();
    let exe = std::fs::read_link("/proc/self/exe").ok();
    for &pid in pids {
        let ours = pid != me && exe.is_some() && std::fs::read_link(format!("/proc/{pid}/exe")).ok() == exe;
        if ours && stat(pid).is_some_and(|(state, ppid, _)| state != 'Z' && ppid != me) {
            found_other.push(format!("an orphan of this program still running: pid {pid}"));
        }
    }
    let now = snapshot();
    for (fd, target) in &now.fds {
        if before.fds.get(fd) != Some(target) {
            found_other.push(format!("a new descriptor: {fd} -> {target}"));
        }
    }
    let new_shm: Vec<&String> = now.shm.difference(&before.shm).collect();
    if !new_shm.is_empty() {
        // Other programs on the machine make segments too: one still mapped by some
        // process is in use, not left behind (this suite itself makes no named segment).
        let mapped = mapped_shm();
        for name in new_shm.into_iter().filter(|n| !mapped.contains(*n)) {
            found_other.push(format!("a new /dev/shm entry, mapped by no process: {name}"));
        }
    }
    found.extend(found_other.into_iter().map(|what| Leak { what, unseen_zombie: false }));
    found
}
