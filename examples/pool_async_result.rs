//! Seed 003's prose, as a program: `AsyncResult`'s `get` with a timeout, `ready`,
//! `successful`, `wait`, an error raised in a task coming back at `get`, and `terminate`.
//!
//! Run with `cargo run --example pool_async_result`.

use std::time::Duration;

use multiproc::{Pool, TaskError};

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(300));
    x * x
}

fn fails(x: u64) -> u64 {
    if x == 0 {
        panic!("cannot divide by {x}");
    }
    100 / x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let pool = Pool::new(2)?;

    // get with a timeout: only the wait stops; the task goes on.
    let res = pool.apply_async(slow_square, 7);
    match pool.apply_async(slow_square, 8).get_timeout(Duration::from_millis(10)) {
        Err(TaskError::WaitTimeout { waited, .. }) => println!("get(timeout={waited:?}) -> TimeoutError"),
        other => println!("unexpected: {other:?}"),
    }

    // ready / wait / successful
    println!("ready() before it ends: {}", res.ready());
    println!("successful() before it ends: {:?} (Python raises ValueError)", res.successful());
    res.wait();
    println!("ready() after wait(): {}", res.ready());
    println!("successful(): {:?}", res.successful());
    println!("get(): {}", res.get()?);

    // An error raised in the task comes back at get().
    let bad = pool.apply_async(fails, 0);
    bad.wait();
    println!("successful() of a failing task: {:?}", bad.successful());
    match bad.get() {
        Err(e) => println!("get() re-raises: {e}"),
        Ok(v) => println!("unexpected value {v}"),
    }

    // terminate(): stops at once; what was pending fails with Terminated.
    let pending: Vec<_> = (0..4).map(|i| pool.apply_async(slow_square, i)).collect();
    pool.terminate();
    for p in pending {
        match p.get() {
            Err(e @ TaskError::Terminated { .. }) => println!("after terminate(): {e}"),
            other => println!("after terminate(): {other:?}"),
        }
    }
    pool.join()?;
    println!("workers left: {}", pool.stats().workers_alive);
    Ok(())
}
