//! Ports of CPython's shared-memory tests.
//!
//! Provenance: `Lib/test/_test_multiprocessing.py` of CPython (the `main` branch at
//! commit 00811485ee5f, the 3.15 development line), classes `_TestSharedMemory`,
//! `_TestValue` and `_TestArray` (shared ctypes values and arrays: `Value`, `RawValue`,
//! `Array`, `RawArray` here). Each test names the method it ports.
//!
//! Differences, and cases not ported:
//! - Here the creating handle removes the name when dropped (or at exit); Python's
//!   creator must call `unlink`. So the tests below use unique names and let `Drop` clean.
//! - `unlink` of a name already gone is not an error here (Python's second `shm_unlink`
//!   raises `FileNotFoundError`): documented behaviour, tested as such.
//! - A handle travels with its descriptor, so one received after the name was removed
//!   still works (`test_shared_memory_pickle_unpickle_dead_object` expects
//!   `FileNotFoundError`): tested as the opposite, on purpose.
//! - Attaching takes no size (Python ignores a size given to an attach).
//! - `ShareableList` and `SharedMemoryManager` have tests of their own
//!   (`shareable_list_across_processes.rs`, `shared_memory_manager_unlinks_at_shutdown.rs`).
//! - The `_make_filename` mock
//!   (`test_shared_memory_recreate`), SIGINT handling of the manager's server and the
//!   resource tracker's own messages: no counterpart here.
//! - Values and arrays are typed (`Pod` types) rather than named by typecodes, so
//!   `test_invalid_typecode` cannot be written. `lock=False` is `RawValue`/`RawArray`,
//!   `lock=` a given lock is `with_lock`, `get_lock()` is there; `get_obj()` is not (an
//!   unlocked view beside a guard of the same process would alias its `&mut`), so
//!   `test_getobj_getlock*` are not ported.
//! - `test_shared_memory_cleaned_after_process_termination` is kept and ignored: the name
//!   of a segment whose creator is killed stays in `/dev/shm` (issue 14, finding 7).

use std::io::ErrorKind;

use multiproc::{Array, Connection, Event, Pipe, Process, RawArray, RawValue, SharedMemory, Value};

multiproc::test_init!();

/// A name no other test run uses (CPython adds the pid too).
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

/// `_TestSharedMemory.test_shared_memory_name_with_embedded_null`
#[test]
fn name_with_embedded_null() {
    let name = unique("cpy-test01-null");
    let _shm = SharedMemory::create_named(&name, 512).unwrap();
    assert!(SharedMemory::attach(&format!("{name}\0a")).is_err());
    assert!(SharedMemory::create_named(&format!("{name}\0b"), 512).is_err());
}

/// `_TestSharedMemory.test_shared_memory_basics`
#[test]
fn basics() {
    let name = unique("cpy-test01-tsmb");
    let mut shm = SharedMemory::create_named(&name, 512).unwrap();
    assert_eq!(shm.name(), name);
    assert!(shm.size() >= 512);
    assert!(shm.as_slice().len() >= shm.size());
    assert!(format!("{shm:?}").contains(&name));
    shm.as_mut_slice()[0] = 42;
    assert_eq!(shm.as_slice()[0], 42);
    let also = SharedMemory::attach(&name).unwrap();
    assert_eq!(also.as_slice()[0], 42);
    assert_eq!(also.size(), shm.size());
    drop(also);
    // A name without a segment, an empty name, a name in use.
    assert_eq!(SharedMemory::attach(&unique("cpy-test01-notthere")).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(SharedMemory::attach("").unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(SharedMemory::create_named(&name, 512).unwrap_err().kind(), ErrorKind::AlreadyExists);
    // Unlinking twice: the second time the name is already gone, which is fine here.
    let twice = unique("cpy-test01-dblunlink");
    let uno = SharedMemory::create_named(&twice, 5000).unwrap();
    assert!(uno.size() >= 5000);
    let duo = SharedMemory::attach(&twice).unwrap();
    duo.unlink().unwrap();
    uno.unlink().unwrap();
    assert_eq!(SharedMemory::attach(&twice).unwrap_err().kind(), ErrorKind::NotFound);
}

/// `_TestSharedMemory.test_invalid_shared_memory_creation`
#[test]
fn invalid_creation() {
    assert_eq!(SharedMemory::create(0).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(SharedMemory::create_named(&unique("cpy-size0"), 0).unwrap_err().kind(), ErrorKind::InvalidInput);
}

/// `_TestSharedMemory.test_shared_memory_pickle_unpickle`: a handle that went through
/// serialization is the same memory.
#[test]
fn handle_round_trip() {
    let mut shm = SharedMemory::create(512).unwrap();
    shm.as_mut_slice()[..6].copy_from_slice(b"pickle");
    let (a, b) = Pipe::duplex::<SharedMemory>().unwrap();
    a.send(shm.try_clone().unwrap()).unwrap();
    let mut shm2 = b.recv().unwrap();
    assert_eq!(shm.name(), shm2.name());
    assert_eq!(&shm2.as_slice()[..6], b"pickle");
    shm.as_mut_slice()[..6].copy_from_slice(b"newval");
    assert_eq!(&shm2.as_slice()[..6], b"newval");
    shm2.as_mut_slice()[..6].copy_from_slice(b"oldval");
    assert_eq!(&shm.as_slice()[..6], b"oldval");
}

/// `_TestSharedMemory.test_shared_memory_pickle_unpickle_dead_object`, inverted: the
/// descriptor travels, so a handle received after the name is gone still works.
#[test]
fn handle_outlives_its_name() {
    let mut shm = SharedMemory::create(512).unwrap();
    shm.as_mut_slice()[..6].copy_from_slice(b"pickle");
    let (a, b) = Pipe::duplex::<SharedMemory>().unwrap();
    a.send(shm.try_clone().unwrap()).unwrap();
    shm.unlink().unwrap();
    drop(shm);
    let got = b.recv().unwrap();
    assert_eq!(&got.as_slice()[..6], b"pickle");
    assert_eq!(SharedMemory::attach(got.name()).unwrap_err().kind(), ErrorKind::NotFound);
}

fn attach_and_write((name, data): (String, Vec<u8>)) {
    let mut shm = SharedMemory::attach(&name).unwrap();
    shm.as_mut_slice()[..data.len()].copy_from_slice(&data);
}

fn write_through((mut shm, data): (SharedMemory, Vec<u8>)) {
    shm.as_mut_slice()[..data.len()].copy_from_slice(&data);
}

/// `_TestSharedMemory.test_shared_memory_across_processes`: by name, and by handle.
#[test]
fn across_processes() {
    let shm = SharedMemory::create(512).unwrap();
    let mut p = Process::new(attach_and_write, (shm.name().to_string(), b"howdy".to_vec()));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(&shm.as_slice()[..5], b"howdy");
    let mut p = Process::new(write_through, (shm.try_clone().unwrap(), b"HELLO".to_vec()));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(&shm.as_slice()[..5], b"HELLO");
}

fn attach_and_leave(name: String) {
    let shm = SharedMemory::attach(&name).unwrap();
    drop(shm);
}

/// `_TestSharedMemory.test_shared_memory_untracking`: a process that only attached does
/// not remove the segment when it ends.
#[test]
fn attaching_process_leaves_the_segment() {
    let shm = SharedMemory::create(10).unwrap();
    let mut p = Process::new(attach_and_leave, shm.name().to_string());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert!(SharedMemory::attach(shm.name()).is_ok());
}

fn create_and_wait((names, never): (Connection<String>, Event)) {
    let shm = SharedMemory::create(10).unwrap();
    names.send(shm.name().to_string()).unwrap();
    never.wait().unwrap();
}

/// `_TestSharedMemory.test_shared_memory_cleaned_after_process_termination`: a segment
/// whose creator is terminated abruptly does not stay behind.
#[test]
fn cleaned_after_creator_is_terminated() {
    let (from_child, to_parent) = Pipe::simplex::<String>().unwrap();
    let mut p = Process::new(create_and_wait, (to_parent, Event::new().unwrap()));
    p.start().unwrap();
    let name = from_child.recv().unwrap();
    p.terminate().unwrap();
    p.join().unwrap();
    // The creator's watcher (not our child: nothing to wait on) removes the name once it
    // sees the creator gone; CPython's test polls its resource tracker the same way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let left = loop {
        let left = SharedMemory::attach(&name);
        if left.is_err() || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::yield_now();
    };
    if let Ok(seg) = &left {
        // Do not leave it behind ourselves.
        seg.unlink().unwrap();
    }
    assert_eq!(left.err().map(|e| e.kind()), Some(ErrorKind::NotFound), "segment {name} leaked");
}

/// `_TestValue.codes_values`: (initial, set by the child) for several types.
type Values = (Value<i32>, Value<f64>, Value<i16>, Value<i64>, Value<u8>);
type RawValues = (RawValue<i32>, RawValue<f64>, RawValue<i16>, RawValue<i64>, RawValue<u8>);

fn set_values((a, b, c, d, e): Values) {
    a.set(24234).unwrap();
    b.set(-4.25).unwrap();
    c.set(234).unwrap();
    d.set(1 << 34).unwrap();
    e.set(b'y').unwrap();
}

fn set_raw_values((a, b, c, d, e): RawValues) {
    a.store(24234);
    b.store(-4.25);
    c.store(234);
    d.store(1 << 34);
    e.store(b'y');
}

fn run<A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static>(f: fn(A), arg: A) {
    let mut p = Process::new(f, arg);
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

/// `_TestValue.test_value`
#[test]
fn value() {
    let v: Values = (
        Value::new(4343).unwrap(),
        Value::new(3.625).unwrap(),
        Value::new(-232).unwrap(),
        Value::new(1 << 33).unwrap(),
        Value::new(b'x').unwrap(),
    );
    let get = |v: &Values| {
        (v.0.get().unwrap(), v.1.get().unwrap(), v.2.get().unwrap(), v.3.get().unwrap(), v.4.get().unwrap())
    };
    assert_eq!(get(&v), (4343, 3.625, -232, 1 << 33, b'x'));
    run(set_values, v.clone());
    assert_eq!(get(&v), (24234, -4.25, 234, 1 << 34, b'y'));
}

/// `_TestValue.test_rawvalue`
#[test]
fn raw_value() {
    let v: RawValues = (
        RawValue::new(4343).unwrap(),
        RawValue::new(3.625).unwrap(),
        RawValue::new(-232).unwrap(),
        RawValue::new(1 << 33).unwrap(),
        RawValue::new(b'x').unwrap(),
    );
    let get = |v: &RawValues| (v.0.load(), v.1.load(), v.2.load(), v.3.load(), v.4.load());
    assert_eq!(get(&v), (4343, 3.625, -232, 1 << 33, b'x'));
    run(set_raw_values, v.clone());
    assert_eq!(get(&v), (24234, -4.25, 234, 1 << 34, b'y'));
}

const SEQ: [i32; 10] = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831];

/// `_TestArray.f`: running sums, in place.
fn prefix_sums(seq: &mut [i32]) {
    for i in 1..seq.len() {
        seq[i] += seq[i - 1];
    }
}

fn prefix_sums_in_child(arr: Array<i32>) {
    prefix_sums(&mut arr.lock().unwrap());
}

fn prefix_sums_raw_in_child(arr: RawArray<i32>) {
    for i in 1..arr.len() {
        arr.set(i, arr.get(i).unwrap() + arr.get(i - 1).unwrap());
    }
}

/// `_TestArray.test_array`
#[test]
fn array() {
    let mut seq = SEQ.to_vec();
    let arr = Array::from_slice(&seq).unwrap();
    assert_eq!(arr.len(), seq.len());
    assert_eq!(arr.get(3).unwrap(), Some(seq[3]));
    assert_eq!(arr.to_vec().unwrap()[2..7], seq[2..7]);
    arr.lock().unwrap()[4..8].copy_from_slice(&[1, 2, 3, 4]);
    seq[4..8].copy_from_slice(&[1, 2, 3, 4]);
    assert_eq!(arr.to_vec().unwrap(), seq);
    prefix_sums(&mut seq);
    run(prefix_sums_in_child, arr.clone());
    assert_eq!(arr.to_vec().unwrap(), seq);
}

/// `_TestArray.test_rawarray`
#[test]
fn raw_array() {
    let mut seq = SEQ.to_vec();
    let arr = RawArray::from_slice(&seq).unwrap();
    assert_eq!(arr.len(), seq.len());
    assert_eq!(arr.get(3), Some(seq[3]));
    for (i, v) in [1, 2, 3, 4].into_iter().enumerate() {
        assert!(arr.set(4 + i, v));
    }
    seq[4..8].copy_from_slice(&[1, 2, 3, 4]);
    assert_eq!(arr.to_vec(), seq);
    assert_eq!(arr.get(10), None);
    assert!(!arr.set(10, 0));
    prefix_sums(&mut seq);
    run(prefix_sums_raw_in_child, arr.clone());
    assert_eq!(arr.to_vec(), seq);
}

/// `_TestArray.test_array_from_size`: a new array is zeroed, every time.
#[test]
fn array_from_size() {
    for _ in 0..3 {
        let arr = Array::new(10, 0i32).unwrap();
        assert_eq!(arr.len(), 10);
        assert_eq!(arr.to_vec().unwrap(), [0; 10]);
        arr.lock().unwrap().copy_from_slice(&(0..10).collect::<Vec<_>>());
        assert_eq!(arr.to_vec().unwrap(), (0..10).collect::<Vec<_>>());
    }
}
