//! Seeds 003-F/003-G: a TCP echo server on 127.0.0.1 that hands each accepted
//! connection, as an `Fd`, to one of a few worker processes; each worker answers every
//! chunk upper-cased until its client closes.
//!
//! As in the seed, each connection is one `apply_async(talk, (conn, addr))` task of a
//! `Pool()` of `cpu_count()` workers; the connection travels to the worker as an `Fd`.
//!
//! Run with `cargo run --example echo_server` (serves on 127.0.0.1:8080 until killed;
//! talk to it with `nc 127.0.0.1 8080`), or `-- --demo` to serve on a free port, run a
//! few clients against itself, and exit.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use multiproc::{Fd, Pool};

/// One task: serve one connection until its client closes.
fn talk((fd, client_addr): (Fd, String)) {
    let _ = client_addr;
    println!("进程pid: {}", std::process::id());
    let mut conn = fd.into_tcp_stream();
    let mut msg = [0u8; 1024];
    loop {
        match conn.read(&mut msg) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                msg[..n].make_ascii_uppercase();
                if conn.write_all(&msg[..n]).is_err() {
                    break;
                }
            }
        }
    }
}

fn client(port: u16, i: usize) -> std::io::Result<String> {
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    let msg = format!("hello world {i}");
    c.write_all(msg.as_bytes())?;
    let mut back = vec![0u8; msg.len()];
    c.read_exact(&mut back)?;
    Ok(String::from_utf8_lossy(&back).into_owned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let demo = std::env::args().any(|a| a == "--demo");
    let server = TcpListener::bind(if demo { "127.0.0.1:0" } else { "127.0.0.1:8080" })?;
    let port = server.local_addr()?.port();
    let p = Pool::builder().build()?; // 默认为cpu的核数
    if !demo {
        println!("echo server on 127.0.0.1:{port}");
        loop {
            let (conn, client_addr) = server.accept()?;
            p.apply_async(talk, (Fd::from(conn), client_addr.to_string()));
        }
    }
    let clients: Vec<_> = (0..5).map(|i| std::thread::spawn(move || client(port, i))).collect();
    for _ in 0..clients.len() {
        let (conn, client_addr) = server.accept()?;
        p.apply_async(talk, (Fd::from(conn), client_addr.to_string()));
    }
    for c in clients {
        let reply = c.join().map_err(|_| "client thread panicked")??;
        println!("{reply}");
    }
    p.close();
    p.join()?;
    Ok(())
}
