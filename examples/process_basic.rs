//! Seed 001: a `Process` has no pid before `start`; the child prints its pid and its
//! parent's; the parent joins it. (Python: `Process(target=do_something, args=(1,))`.)
//!
//! Run with `cargo run --example process_basic`.

use std::time::Duration;

use multiproc::{Process, current_process, parent_process};

fn do_something(seconds: u64) {
    std::thread::sleep(Duration::from_millis(seconds * 500));
    let me = current_process();
    let parent = parent_process().expect("started by multiproc");
    println!(
        "do something in sub_progress: I am {} (pid {}), my parent is {} (pid {})",
        me.name(),
        me.pid(),
        parent.name(),
        parent.pid()
    );
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    println!("main process pid: {}", std::process::id());
    let mut progress = Process::new(do_something, 1);
    println!("progress pid: {:?}", progress.pid());
    progress.start()?;
    println!("progress pid: {:?}", progress.pid());
    progress.join()?;
    println!("exit code: {:?}", progress.exitcode());
    println!("main progress finished");
    Ok(())
}
