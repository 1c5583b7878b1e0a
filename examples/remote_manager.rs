//! A manager served over TCP with an authkey: a client in another process connects,
//! finds the published queue and uses it; a client with the wrong key is refused.
//! (Python: `BaseManager(address=('', 50000), authkey=b'abc')` with a registered
//! `get_queue`, and `m.connect()` in the client.)
//!
//! Run with `cargo run --example remote_manager`.

use multiproc::manager::QueueProxy;
use multiproc::{Manager, Process};

fn client(args: (String, Vec<u8>)) {
    let (address, authkey) = args;
    let m = Manager::connect(&address.parse().expect("an address"), authkey).expect("the right key");
    let jobs: QueueProxy<String> = m.lookup("jobs").expect("a published queue");
    jobs.put(format!("hello from client {}", std::process::id())).unwrap();
}

fn intruder(args: (String, Vec<u8>)) {
    let (address, authkey) = args;
    match Manager::connect(&address.parse().expect("an address"), authkey) {
        Ok(_) => println!("intruder: let in?!"),
        Err(e) => println!("intruder: {e}"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let server = Manager::builder().tcp("127.0.0.1:0".parse()?).authkey(b"abracadabra").start()?;
    println!("manager listening on {}", server.address());
    let jobs = server.queue::<String>(0)?;
    server.publish("jobs", &jobs)?;

    let address = server.address().to_string();
    let mut c = Process::new(client, (address.clone(), b"abracadabra".to_vec()));
    c.start()?;
    println!("server got: {}", jobs.get()?);
    c.join()?;

    let mut i = Process::new(intruder, (address, b"open sesame".to_vec()));
    i.start()?;
    i.join()?;
    Ok(())
}
