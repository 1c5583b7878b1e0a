//! Once a process has made a few reads, its quick reads go through a shared-memory slot
//! beside its connection: they still see every write made before them, replies larger
//! than the slot still arrive, and a server killed while the slot is in use is an
//! error for the reader, not a hang.

use multiproc::manager::DictProxy;
use multiproc::{Manager, ManagerError, Process};

multiproc::test_init!();

const N: u64 = 300;

fn writes_then_reads(d: DictProxy<u64, String>) {
    for i in 0..N {
        d.set(i, i.to_string()).unwrap();
        assert_eq!(d.get(&i).unwrap(), Some(i.to_string()), "a read sees the write just before it");
    }
    for i in 0..N {
        assert_eq!(d.get(&i).unwrap(), Some(i.to_string()));
    }
    // Larger than the slot: it comes back over the socket.
    let big = "x".repeat(200_000);
    d.set(N, big.clone()).unwrap();
    assert_eq!(d.get(&N).unwrap(), Some(big));
    assert_eq!(d.len().unwrap(), N as usize + 1);
    assert!(d.contains_key(&5).unwrap());
    assert_eq!(d.get(&(N + 1)).unwrap(), None);
}

#[test]
fn reads_through_the_slot_see_the_writes_before_them() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u64, String>().unwrap();
    let mut p = Process::new(writes_then_reads, d.clone());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    // The parent reads on a slot of its own and sees the child's writes.
    for i in 0..N {
        assert_eq!(d.get(&i).unwrap(), Some(i.to_string()));
    }
    assert_eq!(d.get(&N).unwrap().map(|s| s.len()), Some(200_000));
    d.set(0, "changed".into()).unwrap();
    assert_eq!(d.get(&0).unwrap().as_deref(), Some("changed"));
}

#[test]
fn a_server_killed_while_reads_use_the_slot_is_an_error_not_a_hang() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u64, u64>().unwrap();
    d.set(1, 1).unwrap();
    for _ in 0..100 {
        assert_eq!(d.get(&1).unwrap(), Some(1));
    }
    let pid = rustix::process::Pid::from_raw(m.pid().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let err = d.get(&1).unwrap_err();
    assert!(matches!(err, ManagerError::Disconnected { .. }), "{err}");
}
