//! Async send and receive between processes on one runtime thread: a child's messages
//! through a `Queue` and a `Pipe`, and its end, awaited with `get_async`, `recv_async`
//! and `join_async` (none blocks the thread; a ticker task keeps ticking meanwhile).
//! `init()` comes first, and the runtime is started by hand after it, so the child
//! carries none of its threads.
//!
//! Run with `cargo run --example async_ipc`.

use std::time::Duration;

use multiproc::{Connection, Pipe, Process, Queue};

fn child((q, conn): (Queue<String>, Connection<String>)) {
    std::thread::sleep(Duration::from_millis(150));
    q.put("through the queue".to_string()).unwrap();
    conn.send("through the pipe".to_string()).unwrap();
    let reply = conn.recv().unwrap();
    println!("child got: {reply}");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let q = Queue::new()?;
    let (mine, theirs) = Pipe::duplex::<String>()?;
    let mut p = Process::new(child, (q.clone(), theirs));
    p.start()?;
    rt.block_on(async {
        let ticker = tokio::spawn(async {
            let mut ticks = 0u64;
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ticks += 1;
                if ticks.is_multiple_of(10) {
                    println!("  (tick {ticks}: the runtime thread is free)");
                }
            }
        });
        println!("queue: {}", q.get_async().await?);
        println!("pipe: {}", mine.recv_async().await?);
        mine.send_async("thanks".to_string()).await?;
        println!("child exited with {}", p.join_async().await?);
        ticker.abort();
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
