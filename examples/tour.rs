//! A quick tour of multiproc: one function per capability, each a second or less.
//!
//! Run with `cargo run --example tour`.

use std::time::Duration;

use multiproc::{Connection, Lock, LockError, Pipe, Process, Queue, SharedMemory, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    ipc()?;
    Ok(())
}

/// A child that squares what it receives on a pipe and reports on a queue, while
/// bumping a shared counter; then a lock whose owner was killed is recovered.
fn ipc() -> Result<(), Box<dyn std::error::Error>> {
    fn squarer((conn, results, counter): (Connection<u64>, Queue<u64>, Value<u64>)) {
        while let Ok(n) = conn.recv() {
            results.put(n * n).unwrap();
            *counter.lock().unwrap() += 1;
        }
    }
    fn die_holding(lock: Lock) {
        let _held = lock.acquire().unwrap();
        std::process::abort();
    }

    println!("== queue, pipe, shared value, robust lock");
    let (mine, theirs) = Pipe::duplex()?;
    let results = Queue::new()?;
    let counter = Value::new(0u64)?;
    let mut child = Process::new(squarer, (theirs, results.clone(), counter.clone()));
    child.start()?;
    for n in 1..=5 {
        mine.send(n)?;
    }
    let squares: Vec<u64> = (0..5).map(|_| results.get_timeout(Duration::from_secs(10))).collect::<Result<_, _>>()?;
    drop(mine); // the child's recv now reports the closed pipe, and it returns
    child.join()?;
    println!("squares from the child: {squares:?}; counter = {}", counter.get()?);

    let mut shm = SharedMemory::create(16)?;
    shm.as_mut_slice()[..2].copy_from_slice(b"ok");
    println!("shared memory `{}` says {}", shm.name(), String::from_utf8_lossy(&shm.as_slice()[..2]));

    let lock = Lock::new()?;
    let mut p = Process::new(die_holding, lock.clone());
    p.start()?;
    p.join()?;
    match lock.acquire_timeout(Duration::from_secs(10)) {
        Err(LockError::OwnerDied(_guard)) => println!("lock: its owner died holding it; recovered"),
        other => println!("lock: unexpected {other:?}"),
    }
    Ok(())
}
