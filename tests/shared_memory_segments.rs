//! Named shared-memory segments: create, attach by name, unlink; owner-only, random
//! names; nothing left in /dev/shm afterwards, even from a child that exits without
//! dropping its segment.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use multiproc::{Process, Queue, SharedMemory};

multiproc::test_init!();

fn in_dev_shm(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

#[test]
fn a_segment_is_private_randomly_named_and_unlinked_on_drop() {
    let a = SharedMemory::create(10_000).unwrap();
    let b = SharedMemory::create(10).unwrap();
    assert_ne!(a.name(), b.name());
    assert!(a.name().len() >= 20, "{}", a.name());
    let mode = std::fs::metadata(Path::new("/dev/shm").join(a.name())).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(a.size(), 10_000);
    let name = a.name().to_string();
    drop(a);
    assert!(!in_dev_shm(&name));
    assert!(SharedMemory::attach(&name).is_err());
}

fn write_by_name(name: String) {
    let mut shm = SharedMemory::attach(&name).unwrap();
    shm.as_mut_slice()[..3].copy_from_slice(b"abc");
}

#[test]
fn a_child_attaching_by_name_writes_in_place() {
    let shm = SharedMemory::create(4096).unwrap();
    let mut p = Process::new(write_by_name, shm.name().to_string());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(&shm.as_slice()[..3], b"abc");
    shm.unlink().unwrap();
    assert!(!in_dev_shm(shm.name()));
    shm.unlink().unwrap(); // twice is fine
}

fn create_and_exit(names: Queue<String>) {
    let shm = SharedMemory::create(4096).unwrap();
    names.put(shm.name().to_string()).unwrap();
    std::mem::forget(shm);
    std::process::exit(0); // no destructors: the exit hook must unlink it
}

#[test]
fn a_segment_a_child_never_dropped_is_unlinked_when_it_exits() {
    let names = Queue::new().unwrap();
    let mut p = Process::new(create_and_exit, names.clone());
    p.start().unwrap();
    let name = names.get().unwrap();
    p.join().unwrap();
    assert!(!in_dev_shm(&name), "{name} leaked");
}

#[test]
fn bad_names_and_sizes_are_clear_errors() {
    assert!(SharedMemory::create_named("a/b", 10).unwrap_err().to_string().contains("not a valid"));
    assert!(SharedMemory::create(0).is_err());
    let a = SharedMemory::create(64).unwrap();
    let e = SharedMemory::create_named(a.name(), 64).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
}
