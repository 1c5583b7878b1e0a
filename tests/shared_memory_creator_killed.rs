//! A named segment whose creator is SIGKILLed (no exit hook runs) does not stay in
//! `/dev/shm`: each creating process has a watcher (Python's resource tracker) that
//! removes the names it still owned once it has ended, however. A name the creator
//! unlinked itself is not the watcher's business any more, even if someone else creates
//! it again; and no watcher outlives its work.

use std::path::Path;
use std::time::{Duration, Instant};

use multiproc::{Event, Process, Queue, SharedMemory};

multiproc::test_init!();

fn in_dev_shm(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

/// Creates two segments, unlinks the first, reports both names, then waits to be killed.
fn create_two_unlink_one((names, _hold): (Queue<String>, Event)) {
    let first = SharedMemory::create(4096).unwrap();
    let second = SharedMemory::create(4096).unwrap();
    first.unlink().unwrap();
    names.put(first.name().to_string()).unwrap();
    names.put(second.name().to_string()).unwrap();
    _hold.wait().unwrap();
    unreachable!("killed before");
}

/// Creates a segment named `name`, says so, holds it until released, then drops it.
fn hold_named((name, held, release): (String, Event, Event)) {
    let shm = SharedMemory::create_named(&name, 4096).unwrap();
    held.set();
    release.wait().unwrap();
    drop(shm);
}

/// Live watcher processes started from this test binary.
fn watchers() -> Vec<u32> {
    let me = std::env::current_exe().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // An ended watcher that the system's init has not reaped yet is not left running.
        let zombie = stat.rfind(')').is_some_and(|i| stat[i + 2..].starts_with('Z'));
        if comm.trim() == "multiproc-shm" && exe.as_deref() == Some(me.as_path()) && !zombie {
            found.push(pid);
        }
    }
    found
}

/// Polls `done` until it holds, with a deadline (generous, as it is not what is tested).
fn eventually(what: impl Fn() -> String, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{}", what());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_killed_creators_segments_are_removed_and_nothing_else() {
    let before = watchers();
    let names = Queue::new().unwrap();
    let hold = Event::new().unwrap();
    let mut creator = Process::new(create_two_unlink_one, (names.clone(), hold.clone())).daemon(true);
    creator.start().unwrap();
    let unlinked = names.get().unwrap();
    let kept = names.get().unwrap();
    assert!(!in_dev_shm(&unlinked) && in_dev_shm(&kept));

    // Someone else creates the name the creator unlinked: not the creator's any more.
    let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
    let mut other = Process::new(hold_named, (unlinked.clone(), held.clone(), release.clone())).daemon(true);
    other.start().unwrap();
    held.wait().unwrap();

    creator.kill().unwrap();
    creator.join().unwrap();
    assert_eq!(creator.exitcode(), Some(-9));
    eventually(|| format!("{kept} left in /dev/shm by the killed creator"), || !in_dev_shm(&kept));
    assert!(in_dev_shm(&unlinked), "the watcher removed a name its process had given up");

    release.set();
    other.join().unwrap();
    assert_eq!(other.exitcode(), Some(0));
    assert!(!in_dev_shm(&unlinked));
    eventually(|| format!("watchers left: {:?} (before: {before:?})", watchers()), || watchers() == before);
}
