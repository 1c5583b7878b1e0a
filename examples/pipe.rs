//! Seeds 001-H and 002-D: a `Pipe` between two processes, then used both ways.
//! (Python: `recevie_pipe, send_pipe = Pipe()`; `A, B = Pipe()`.)
//!
//! Run with `cargo run --example pipe`.

use multiproc::{Connection, Pipe, Process};

fn producer(pipe: Connection<String>) {
    pipe.send("scott".to_string()).expect("send");
}

fn consumer(pipe: Connection<String>) {
    let data = pipe.recv().expect("recv");
    println!("{data}");
}

fn f(n: Connection<String>) {
    println!("{}", n.recv().expect("recv"));
    n.send("it's me".to_string()).expect("send");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    // 001-H: one end only sends, the other only receives.
    let (recevie_pipe, send_pipe) = Pipe::duplex::<String>()?;
    let mut my_producer = Process::new(producer, send_pipe);
    let mut my_consumer = Process::new(consumer, recevie_pipe);
    my_producer.start()?;
    my_consumer.start()?;
    my_producer.join()?;
    my_consumer.join()?;

    // 002-D: send and receive both ways.
    let (a, b) = Pipe::duplex::<String>()?;
    let mut m = Process::new(f, b);
    m.start()?;
    a.send("hello".to_string())?;
    println!("{}", a.recv()?);
    m.join()?;
    Ok(())
}
