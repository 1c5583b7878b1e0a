//! A `Process` dropped without `join` leaves nothing behind: the child runs on (as in
//! Python), and once it ends it is reaped, with its descriptors closed, without waiting
//! for `active_children()` or the program's exit.

use std::time::{Duration, Instant};

use multiproc::{Event, Process};

multiproc::test_init!();

/// Runs only once the parent has dropped its handle, then says so and ends.
fn after_the_drop((go, done): (Event, Event)) {
    go.wait().unwrap();
    done.set();
}

fn quick(_: ()) {}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Children of this process that `/proc` still shows, zombies included, with their state.
fn children() -> Vec<(u32, char)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let mut fields = after.split_whitespace();
        let state = fields.next().unwrap().chars().next().unwrap();
        if fields.next().unwrap().parse::<u32>().unwrap() == me {
            found.push((pid, state));
        }
    }
    found
}

/// Polls `done` until it holds, with a generous deadline (not what is tested).
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_dropped_process_is_reaped_and_its_descriptors_closed() {
    let go = Event::new().unwrap();
    let done = Event::new().unwrap();
    // Whatever a first child sets up for good in this process is not a leak.
    let mut warm = Process::new(quick, ());
    warm.start().unwrap();
    warm.join().unwrap();
    let baseline = open_fds();
    for daemon in [false, true] {
        done.clear();
        go.clear();
        let mut p = Process::new(after_the_drop, (go.clone(), done.clone())).daemon(daemon);
        p.start().unwrap();
        let pid = p.pid().unwrap();
        drop(p);
        // Dropping the handle does not stop the child.
        go.set();
        assert!(done.wait_timeout(Duration::from_secs(60)).unwrap(), "the child did not run on after the drop");
        eventually(&format!("child {pid} (daemon {daemon}) left behind: {:?}", children()), || {
            !children().iter().any(|&(p, _)| p == pid)
        });
        eventually(&format!("{} descriptors open, {baseline} before", open_fds()), || open_fds() == baseline);
    }
    assert!(children().is_empty(), "{:?}", children());
}
