//! Seed 003's interactive client, the twin of its `input('>>: ')` loop: connects to the
//! echo server (`cargo run --example echo_server`, on 127.0.0.1:8080), sends each line
//! typed (empty lines are skipped, as in the seed) and prints what comes back, until end
//! of input (Ctrl-D) or the server closes.
//!
//! Run with `cargo run --example echo_client` in a second terminal, or pipe lines in:
//! `printf 'hello\nworld\n' | cargo run --example echo_client` prints `HELLO` and `WORLD`.
//! `-- --port N` talks to another port.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;

fn port() -> Result<u16, String> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--port") {
        None => Ok(8080),
        Some(i) => {
            let given = args.get(i + 1).ok_or("--port wants a number")?;
            given.parse().map_err(|_| format!("--port wants a number, got `{given}`"))
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = port()?;
    let mut client = TcpStream::connect(("127.0.0.1", port)).map_err(|e| {
        format!(
            "cannot reach the echo server on 127.0.0.1:{port} ({e}): start it with `cargo run --example echo_server`"
        )
    })?;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    loop {
        print!(">>: ");
        out.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(());
        }
        let msg = line.trim();
        if msg.is_empty() {
            continue;
        }
        client.write_all(msg.as_bytes())?;
        // The server answers every chunk with as many bytes, upper-cased.
        let mut reply = vec![0u8; msg.len()];
        client.read_exact(&mut reply).map_err(|e| format!("no whole reply from the server: {e}"))?;
        println!("{}", String::from_utf8_lossy(&reply));
    }
}
