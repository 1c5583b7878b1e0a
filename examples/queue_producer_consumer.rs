//! Seeds 001-E and 002-C: a producer process and a consumer process share a
//! `Queue(10)`; then a child puts a list on a queue and the parent prints it.
//! (Python: `Queue(10)`, `Process(target=producer, args=(queue,))`.)
//!
//! Run with `cargo run --example queue_producer_consumer`.

use std::time::Duration;

use multiproc::{Process, Queue};

fn producer(queue: Queue<String>) {
    queue.put("a".to_string()).expect("put");
    std::thread::sleep(Duration::from_millis(500));
}

fn consumer(queue: Queue<String>) {
    std::thread::sleep(Duration::from_millis(500));
    let data = queue.get().expect("get");
    println!("{data}");
}

/// Python's `[1, '23', 'sdad']`: a heterogeneous list becomes a tuple of typed values.
fn f(qq: Queue<(i32, String, String)>) {
    qq.put((1, "23".to_string(), "sdad".to_string())).expect("put");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    // 001-E
    let queue = Queue::bounded(10)?;
    let mut my_producer = Process::new(producer, queue.clone());
    let mut my_consumer = Process::new(consumer, queue.clone());
    my_producer.start()?;
    my_consumer.start()?;
    my_producer.join()?;
    my_consumer.join()?;

    // 002-C
    let q = Queue::new()?;
    let mut p = Process::new(f, q.clone());
    p.start()?;
    let (a, b, c) = q.get()?;
    println!("[{a}, '{b}', '{c}']");
    p.join()?;
    Ok(())
}
