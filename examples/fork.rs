//! Seed 001's `os.fork()` program, the safe way.
//!
//! Python forks the running interpreter; forking a multi-threaded Rust program is unsound,
//! so multiproc starts the same program again and runs one function in it. The output is
//! the seed's: the parent prints the child's pid, the child its own pid and its parent's.
//!
//! Run with `cargo run --example fork`.

use multiproc::{Process, parent_process};

fn in_child(_: ()) {
    println!("in the child process: {}", std::process::id());
    println!("its parent process is: {}", parent_process().expect("started by multiproc").pid());
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    println!("Hi, this is the parent, pid {}", std::process::id());
    let mut child = Process::new(in_child, ());
    child.start()?;
    println!("in the parent process: started child {}", child.pid().expect("started"));
    child.join()?;
    Ok(())
}
