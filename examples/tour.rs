//! A walk through every capability of multiproc, in a few seconds.
//!
//! Run with `cargo run --release --example tour`.

use std::time::Instant;

use multiproc::{Process, current_process, parent_process};

fn main() -> Result<(), multiproc::Error> {
    // First line of main: a child becomes its job here and never returns.
    multiproc::init();
    let start = Instant::now();
    processes()?;
    println!("\ntour finished in {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn section(title: &str) {
    println!("\n== {title} ==");
}

fn hello(n: u32) {
    let me = current_process();
    let parent = parent_process().expect("a child knows its parent");
    println!("  {} (pid {}) says hello #{n} to {} (pid {})", me.name(), me.pid(), parent.name(), parent.pid());
}

fn crash(how: String) {
    match how.as_str() {
        "panic" => panic!("a bug in the child"),
        _ => std::process::exit(3),
    }
}

fn sleep_forever(_: ()) {
    std::thread::sleep(std::time::Duration::from_secs(3600));
}

/// Processes: start, join, names, exit codes the way Python reports them.
fn processes() -> Result<(), multiproc::Error> {
    section("Process: real OS processes running Rust functions");
    let mut p = Process::new(hello, 1).name("greeter");
    println!("  before start: pid {:?}", p.pid());
    p.start()?;
    p.join()?;
    println!("  {} exited with {:?}", p.get_name(), p.exitcode());

    let mut panicking = Process::new(crash, "panic".to_string());
    panicking.start()?;
    panicking.join()?;
    println!("  a panicking child exits with {:?} (its message went to its stderr above)", panicking.exitcode());

    let mut sleeper = Process::new(sleep_forever, ());
    sleeper.start()?;
    sleeper.kill()?;
    sleeper.join()?;
    println!("  a SIGKILLed child reports {:?}, as Python's exitcode does", sleeper.exitcode());
    println!("  this machine offers {} CPUs to this process", multiproc::cpu_count());
    Ok(())
}
