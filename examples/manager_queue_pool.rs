//! Seed 000: a writer and a reader task share a `Manager().Queue()`. The writer puts the
//! letters of "itcast"; the reader gets `qsize()` items and prints them. Both print
//! their pid and their parent's, as two tasks of a `Pool()`.
//!
//! Run with `cargo run --example manager_queue_pool`.

use multiproc::manager::QueueProxy;
use multiproc::{Manager, Pool};

fn reader(q: QueueProxy<String>) {
    println!("reader启动({}),父进程为({})", std::process::id(), parent_pid());
    for _ in 0..q.len().unwrap() {
        println!("reader从Queue获取到消息:{}", q.get().unwrap());
    }
}

fn writer(q: QueueProxy<String>) {
    println!("writer启动({}),父进程为({})", std::process::id(), parent_pid());
    for c in "itcast".chars() {
        q.put(c.to_string()).unwrap();
    }
}

fn parent_pid() -> u32 {
    multiproc::parent_process().map(|p| p.pid()).unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    println!("({}) start", std::process::id());
    let m = Manager::start()?;
    let q = m.queue::<String>(0)?; // the Manager's queue: it can go to pool tasks
    let po = Pool::builder().build()?;
    let w = po.apply_async(writer, q.clone());
    // Python sleeps a second here; waiting for the writer says what is meant.
    w.get()?;
    po.apply_async(reader, q);
    po.close();
    po.join()?;
    println!("({}) End", std::process::id());
    Ok(())
}
