//! Seeds 001 and 002: a `Process` has no pid before `start`; the parent and the child
//! each print who they are (in green and red, as seed 002 does) with their pid and their
//! parent's; the parent joins the child. (Python: `Process(target=do_something, args=(1,))`.)
//!
//! Run with `cargo run --example process_basic`.

use std::time::Duration;

use multiproc::{Process, current_process, parent_process};

/// Seed 002's `a(title)`: who am I, who is my parent.
fn describe(title: &str) {
    println!("{title}");
    println!("process name: {}", current_process().name());
    println!("parent process: {}", std::os::unix::process::parent_id());
    println!("current process: {}", std::process::id());
}

fn do_something(seconds: u64) {
    describe("\x1b[31;1mhello it's me\x1b[0m");
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
    describe("\x1b[32;1mhello it's me\x1b[0m");
    let mut progress = Process::new(do_something, 1);
    println!("progress pid: {:?}", progress.pid());
    progress.start()?;
    println!("progress pid: {:?}", progress.pid());
    progress.join()?;
    println!("exit code: {:?}", progress.exitcode());
    println!("main progress finished");
    Ok(())
}
