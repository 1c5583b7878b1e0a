//! `SharedMemoryManager` (Python's `multiprocessing.managers.SharedMemoryManager`): the
//! segments and lists it makes outlive their handles, and all go at its shutdown, at its
//! drop, and when the process holding it is SIGKILLed (no exit hook runs).

use std::path::Path;
use std::time::{Duration, Instant};

use multiproc::{Event, Process, Queue, ShareableItem, ShareableList, SharedMemory, SharedMemoryManager};

multiproc::test_init!();

fn in_dev_shm(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
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
fn segments_outlive_their_handles_and_go_at_shutdown() {
    let smm = SharedMemoryManager::new();
    let shm_name = smm.shared_memory(100).unwrap().name().to_string();
    let list_name = smm.shareable_list([1, 2, 3]).unwrap().name().to_string();
    assert!(in_dev_shm(&shm_name) && in_dev_shm(&list_name), "a dropped handle removed its segment");
    let mut names = smm.names();
    names.sort();
    let mut want = vec![shm_name.clone(), list_name.clone()];
    want.sort();
    assert_eq!(names, want);
    // A handle that unlinks its segment itself leaves the manager nothing to do there.
    let early = smm.shared_memory(10).unwrap();
    early.unlink().unwrap();
    let list = ShareableList::attach(&list_name).unwrap();
    smm.shutdown().unwrap();
    assert!(!in_dev_shm(&shm_name) && !in_dev_shm(&list_name));
    // What is mapped stays usable; nothing new is made.
    assert_eq!(list.get(2).unwrap(), ShareableItem::Int(3));
    let e = smm.shared_memory(10).unwrap_err();
    assert!(e.to_string().contains("shut down"), "{e}");
    assert!(smm.shareable_list(["x"]).is_err());
    smm.shutdown().unwrap();
}

#[test]
fn dropping_the_manager_shuts_it_down() {
    let smm = SharedMemoryManager::new();
    let name = smm.shareable_list(["a"]).unwrap().name().to_string();
    assert!(in_dev_shm(&name));
    drop(smm);
    assert!(!in_dev_shm(&name));
}

/// Makes a list and a segment through a manager, lets another process write to the list,
/// reports the names, then waits to be killed.
fn owner((names, hold): (Queue<String>, Event)) {
    let smm = SharedMemoryManager::new();
    let list = smm.shareable_list([0]).unwrap();
    let shm = smm.shared_memory(4096).unwrap();
    names.put(list.name().to_string()).unwrap();
    names.put(shm.name().to_string()).unwrap();
    drop((list, shm));
    hold.wait().unwrap();
    unreachable!("killed before");
}

#[test]
fn a_killed_owners_segments_are_removed() {
    let names = Queue::new().unwrap();
    let hold = Event::new().unwrap();
    let mut p = Process::new(owner, (names.clone(), hold.clone())).daemon(true);
    p.start().unwrap();
    let (list_name, shm_name) = (names.get().unwrap(), names.get().unwrap());
    // Both are there and usable from here while the owner lives.
    let mut list = ShareableList::attach(&list_name).unwrap();
    list.set(0, 99).unwrap();
    assert!(SharedMemory::attach(&shm_name).is_ok());
    p.kill().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-9));
    eventually(
        || format!("{list_name} or {shm_name} left in /dev/shm by the killed owner"),
        || !in_dev_shm(&list_name) && !in_dev_shm(&shm_name),
    );
    assert_eq!(list.get(0).unwrap(), ShareableItem::Int(99), "the mapping outlives the name");
}

/// Makes a list through a manager it never shuts down (forgotten), reports its name, and
/// returns: the process exits normally.
fn forgets_its_manager(names: Queue<String>) {
    let smm = SharedMemoryManager::new();
    names.put(smm.shareable_list(["kept until exit"]).unwrap().name().to_string()).unwrap();
    std::mem::forget(smm);
}

#[test]
fn an_owner_that_exits_without_shutdown_leaves_nothing() {
    let names = Queue::new().unwrap();
    let mut p = Process::new(forgets_its_manager, names.clone());
    p.start().unwrap();
    let name = names.get().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    eventually(|| format!("{name} left in /dev/shm after its owner exited"), || !in_dev_shm(&name));
}
