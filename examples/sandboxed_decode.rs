//! Decoding untrusted inputs in sandboxed workers.
//!
//! Each input is "decoded" by a worker that may read nothing but `/usr`, open no network
//! socket, run no program, use one second of CPU, and whose every descendant dies with it.
//! Inputs that try to read `/etc/passwd`, connect to 127.0.0.1, exec `/bin/sh`, start a
//! crowd of children, or spin forever are each denied or stopped and reported; the good
//! inputs come back.
//!
//! Run: `cargo run --example sandboxed_decode --features sandbox`

use std::time::Duration;

use multiproc::{Limits, Pool, Sandbox};

/// An untrusted input, decoded: good ones are hex; the others misbehave as they say.
fn decode(input: String) -> Result<String, String> {
    match input.split_once(':') {
        Some(("read", path)) => std::fs::read_to_string(path).map(|s| s.len().to_string()).map_err(|e| e.to_string()),
        Some(("connect", addr)) => {
            std::net::TcpStream::connect(addr).map(|_| "connected".into()).map_err(|e| e.to_string())
        }
        Some(("exec", prog)) => {
            Err(std::os::unix::process::CommandExt::exec(&mut std::process::Command::new(prog)).to_string())
        }
        Some(("children", n)) => {
            let n: usize = n.parse().map_err(|e| format!("{e}"))?;
            let children: Vec<_> =
                (0..n).filter_map(|_| std::process::Command::new("sleep").arg("600").spawn().ok()).collect();
            let ran = children.into_iter().filter_map(|mut c| c.wait().ok()).filter(|s| s.code().is_some()).count();
            // Under `no_exec` each child dies by SIGSYS at its exec; without the sandbox,
            // containment would kill them with the worker.
            Err(format!("{n} children asked for, {ran} ran"))
        }
        Some(("spin", _)) => loop {
            std::hint::black_box(0u64);
        },
        _ => (0..input.len() / 2)
            .map(|i| u8::from_str_radix(&input[2 * i..2 * i + 2], 16).map(char::from))
            .collect::<Result<String, _>>()
            .map_err(|e| format!("not hex: {e}")),
    }
}

fn main() {
    multiproc::init();
    let sandbox = Sandbox::new().no_network().no_exec().no_ptrace().read_only("/usr");
    let pool = Pool::builder()
        .processes(2)
        .limits(Limits::new().cpu_time(Duration::from_secs(1)))
        .sandbox(sandbox)
        .build()
        .expect("a sandboxed pool (Linux with seccomp and Landlock)");
    let inputs =
        ["68656c6c6f", "read:/etc/passwd", "connect:127.0.0.1:9", "exec:/bin/sh", "children:50", "spin:", "776f726c64"];
    for input in inputs {
        match pool.apply(decode, input.to_string()) {
            Ok(Ok(value)) => println!("{input:>22} -> {value}"),
            Ok(Err(refused)) => println!("{input:>22} -> refused by the task: {refused}"),
            Err(stopped) => println!("{input:>22} -> stopped: {stopped}"),
        }
    }
    let stats = pool.stats();
    println!("containment: {}; workers started: {}", stats.containment, stats.workers_started);
}
