//! Seed 001: a producer and a consumer task on a `Pool(2)` share a `Manager().Queue(10)`
//! (tasks of a pool cannot share a plain queue in Python: the seed says "pool 中的 queue 需要
//! 使用 manager 中的", a pool's queue must be the manager's). The producer puts "a"; the
//! consumer gets it and prints it.
//!
//! ```text
//! a
//! ```
//!
//! The seed's tasks sleep two seconds each, so that the consumer's `get` comes after the
//! `put`; here the consumer's `get` simply waits for the item, so the output is the same
//! whichever task starts first.
//!
//! Run with `cargo run --example manager_queue_producer_consumer`.

use multiproc::manager::QueueProxy;
use multiproc::{Manager, Pool};

fn producer(queue: QueueProxy<String>) {
    queue.put("a".to_string()).expect("put");
}

fn consumer(queue: QueueProxy<String>) {
    let data = queue.get().expect("get");
    println!("{data}");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    // queue = Manager().Queue(10): the manager (a server process) must outlive the pool's
    // tasks, so it is kept in a variable rather than dropped at once as in the seed.
    let manager = Manager::start()?;
    let queue = manager.queue::<String>(10)?;
    let pool = Pool::builder().processes(2).build()?;

    pool.apply_async(producer, queue.clone());
    pool.apply_async(consumer, queue);

    pool.close();
    pool.join()?;
    Ok(())
}
