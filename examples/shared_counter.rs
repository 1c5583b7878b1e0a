//! A `Value` counter incremented under its lock by four processes (no seed program: the
//! classic `multiprocessing.Value('i', 0)` + `with v.get_lock(): v.value += 1`), and the
//! same without a lock, losing updates.
//!
//! An unlocked `counter.store(counter.load() + 1)` is a read-modify-write: two processes
//! that read the same value both write value + 1, and one update is lost. So without a
//! lock the total is *at most* the number of increments, and how much less depends on how
//! the processes happen to interleave. To show the loss on every run rather than on lucky
//! ones, the unlocked processes here pause between the read and the write at a `Barrier`:
//! all four read before any of them writes, so each round adds 1, not 4. With the lock,
//! the read and the write are one step no other process can split, and the total is exact.
//!
//! Run with `cargo run --example shared_counter`.

use multiproc::{Barrier, Process, RawValue, Value};

const PROCESSES: u32 = 4;
const PER_PROCESS: u64 = 10_000;
/// Rounds of the unlocked demonstration (each meets the others twice at the barrier).
const ROUNDS: u64 = 200;

fn add_locked(counter: Value<u64>) {
    for _ in 0..PER_PROCESS {
        *counter.lock().expect("lock") += 1;
    }
}

fn add_unlocked((counter, pause): (RawValue<u64>, Barrier)) {
    for _ in 0..ROUNDS {
        let seen = counter.load(); // read ...
        pause.wait().expect("barrier"); // ... everyone else reads too ...
        counter.store(seen + 1); // ... write: three of the four writes are lost
        pause.wait().expect("barrier"); // the next round reads what was written
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let counter = Value::new(0u64)?;
    let raw = RawValue::new(0u64)?;
    let pause = Barrier::new(PROCESSES)?;
    let mut procs = Vec::new();
    for _ in 0..PROCESSES {
        procs.push(Process::new(add_locked, counter.clone()));
        procs.push(Process::new(add_unlocked, (raw.clone(), pause.clone())));
    }
    for p in &mut procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?;
    }
    let (locked, unlocked) = (counter.get()?, raw.load());
    let (locked_want, unlocked_tries) = (u64::from(PROCESSES) * PER_PROCESS, u64::from(PROCESSES) * ROUNDS);
    println!("with the lock:    {locked} of {locked_want} increments (always exact)");
    println!(
        "without a lock:   {unlocked} of {unlocked_tries} increments ({} lost: each round all four read \
         before any writes; without the pause, fewer are lost, but any can be)",
        unlocked_tries - unlocked
    );
    assert_eq!(locked, locked_want);
    assert!(unlocked <= unlocked_tries);
    Ok(())
}
