//! A `Value` counter incremented under its lock by four processes (no seed program: the
//! classic `multiprocessing.Value('i', 0)` + `with v.get_lock(): v.value += 1`).
//! Also shows the unlocked `RawValue` losing updates, for contrast.
//!
//! Run with `cargo run --example shared_counter`.

use multiproc::{Process, RawValue, Value};

const PER_PROCESS: u64 = 10_000;

fn add_locked(counter: Value<u64>) {
    for _ in 0..PER_PROCESS {
        *counter.lock().expect("lock") += 1;
    }
}

fn add_unlocked(counter: RawValue<u64>) {
    for _ in 0..PER_PROCESS {
        counter.store(counter.load() + 1); // read-modify-write race
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let counter = Value::new(0u64)?;
    let raw = RawValue::new(0u64)?;
    let mut procs = Vec::new();
    for _ in 0..4 {
        procs.push(Process::new(add_locked, counter.clone()));
        procs.push(Process::new(add_unlocked, raw.clone()));
    }
    for p in &mut procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?;
    }
    println!("with the lock:    {} (expected {})", counter.get()?, 4 * PER_PROCESS);
    println!("without a lock:   {} (updates may be lost)", raw.load());
    Ok(())
}
