//! Seed 002: ten processes that each start a thread and print their ids. A child
//! waits for its threads before it exits, so the whole run takes two sleeps, not one.
//!
//! Run with `cargo run --example process_threads`.

use std::time::{Duration, Instant};

use multiproc::Process;

fn run(name: String) {
    std::thread::sleep(Duration::from_millis(500));
    println!("hi {name}");
}

fn running(name: String) {
    std::thread::sleep(Duration::from_millis(500));
    println!("ok {name} pid {} thread {:?}", std::process::id(), std::thread::current().id());
    let t = std::thread::spawn(move || run(name));
    // Python's interpreter waits for non-daemon threads at exit; in Rust we join.
    t.join().expect("thread panicked");
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let start = Instant::now();
    let mut procs = Vec::new();
    for i in 0..10 {
        let mut p = Process::new(running, format!("cf{i}"));
        p.start()?;
        procs.push(p);
    }
    for p in &procs {
        p.join()?;
    }
    println!("{:.3}", start.elapsed().as_secs_f64());
    Ok(())
}
