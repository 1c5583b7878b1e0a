//! Names, pids and parents as Python reports them, children that start children,
//! `active_children()` and `cpu_count()`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use multiproc::{Process, active_children, cpu_count, current_process, parent_process};

multiproc::test_init!();

/// A listening socket the children report to; removed at drop.
struct Reports {
    path: PathBuf,
    listener: UnixListener,
}

impl Reports {
    fn new(tag: &str) -> Reports {
        let path = std::env::temp_dir().join(format!("multiproc-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        Reports { path, listener }
    }
    fn addr(&self) -> String {
        self.path.to_str().unwrap().to_string()
    }
    /// Waits for the next child to connect and returns the line it sends.
    fn next(&self) -> String {
        let (s, _) = self.listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }
}

impl Drop for Reports {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn report(addr: &str, line: String) {
    let mut s = UnixStream::connect(addr).unwrap();
    writeln!(s, "{line}").unwrap();
}

fn who_am_i(addr: String) {
    let me = current_process();
    let parent = parent_process().unwrap();
    report(&addr, format!("{} {} {} {}", me.name(), me.pid(), parent.name(), parent.pid()));
}

#[test]
fn the_main_process_is_called_mainprocess_and_has_no_parent() {
    assert_eq!(current_process().name(), "MainProcess");
    assert_eq!(current_process().pid(), std::process::id());
    assert!(parent_process().is_none());
}

#[test]
fn a_child_knows_its_name_pid_and_parent() {
    let reports = Reports::new("names");
    let mut named = Process::new(who_am_i, reports.addr()).name("worker-1");
    named.start().unwrap();
    let line = reports.next();
    named.join().unwrap();
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts[0], "worker-1");
    assert_eq!(parts[1].parse::<u32>().unwrap(), named.pid().unwrap());
    assert_eq!(parts[2], "MainProcess");
    assert_eq!(parts[3].parse::<u32>().unwrap(), std::process::id());
    assert_eq!(named.get_name(), "worker-1");
}

fn my_os_name(addr: String) {
    report(&addr, std::fs::read_to_string("/proc/self/comm").unwrap().trim_end().to_string());
}

fn os_name(_: ()) -> String {
    std::fs::read_to_string("/proc/self/comm").unwrap().trim_end().to_string()
}

#[test]
fn children_and_pool_workers_carry_the_programs_name_for_ps() {
    // The main thread's name is the process's name (`ps`, `top`, `pkill`).
    let ours = std::fs::read_to_string(format!("/proc/{}/comm", std::process::id())).unwrap();
    let ours = ours.trim_end();
    assert_ne!(ours, "exe");
    let reports = Reports::new("comm");
    let mut p = Process::new(my_os_name, reports.addr());
    p.start().unwrap();
    assert_eq!(reports.next(), ours, "a Process child");
    p.join().unwrap();
    let pool = multiproc::Pool::new(1).unwrap();
    assert_eq!(pool.apply(os_name, ()).unwrap(), ours, "a pool worker");
}

#[test]
fn unnamed_children_are_called_process_n() {
    let reports = Reports::new("default-names");
    let mut p = Process::new(who_am_i, reports.addr());
    p.start().unwrap();
    let line = reports.next();
    p.join().unwrap();
    let name = line.split(' ').next().unwrap();
    assert!(name.starts_with("Process-"), "{name}");
    assert_eq!(p.get_name(), name);
}

fn starts_a_grandchild(addr: String) {
    let mut g = Process::new(who_am_i, addr.clone());
    g.start().unwrap();
    g.join().unwrap();
    report(&addr, format!("grandchild exit {:?}", g.exitcode()));
}

#[test]
fn a_child_can_start_its_own_process() {
    let reports = Reports::new("nested");
    let mut child = Process::new(starts_a_grandchild, reports.addr()).name("middle");
    child.start().unwrap();
    let grandchild = reports.next();
    let done = reports.next();
    child.join().unwrap();
    assert_eq!(child.exitcode(), Some(0));
    let parts: Vec<&str> = grandchild.split(' ').collect();
    // Python names a child's children `Process-N:M`.
    assert!(parts[0].starts_with("Process-") && parts[0].contains(':'), "{grandchild}");
    assert_eq!(parts[2], "middle");
    assert_eq!(parts[3].parse::<u32>().unwrap(), child.pid().unwrap());
    assert_eq!(done, "grandchild exit Some(0)");
}

fn waits_for_a_word(addr: String) {
    let mut s = UnixStream::connect(&addr).unwrap();
    writeln!(s, "ready").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
}

#[test]
fn active_children_lists_running_children_and_reaps_finished_ones() {
    let path = std::env::temp_dir().join(format!("multiproc-active-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let mut p = Process::new(waits_for_a_word, path.to_str().unwrap().to_string()).name("lingering");
    p.start().unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let pid = p.pid().unwrap();
    assert!(active_children().iter().any(|c| c.pid() == pid && c.name() == "lingering"));
    writeln!(conn, "go").unwrap();
    p.join().unwrap();
    assert!(!active_children().iter().any(|c| c.pid() == pid));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn cpu_count_follows_the_affinity_mask() {
    let n = cpu_count();
    assert!(n >= 1);
    assert!(n <= std::thread::available_parallelism().map(|n| n.get()).unwrap_or(n).max(n));
}
