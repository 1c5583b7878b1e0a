//! Decoding untrusted inputs in sandboxed workers.
//!
//! Each input is "decoded" by a worker that may read nothing but `/usr`, change nothing
//! on any filesystem (the read-only syscalls preset), open no network socket, run no
//! program, use one second of CPU, and whose every descendant dies with it. Inputs that
//! try to read `/etc/passwd`, write a file, connect to 127.0.0.1, exec `/bin/sh`, start a
//! crowd of children, or spin forever are each denied or stopped and reported; the good
//! inputs come back. A second pool shows a private network: its workers may open sockets,
//! but an input that connects to a listener of this very program on 127.0.0.1 reaches
//! nothing.
//!
//! Every sandbox asks for best effort, so the example runs where the kernel refuses a
//! part (no Landlock, no unprivileged user namespaces); each pool prints what is in
//! effect, and an input a left-out rule would have stopped gets through.
//!
//! Run: `cargo run --example sandboxed_decode --features sandbox`

use std::time::Duration;

use multiproc::{Limits, Pool, Sandbox};

/// An untrusted input, decoded: good ones are hex; the others misbehave as they say.
fn decode(input: String) -> Result<String, String> {
    match input.split_once(':') {
        Some(("read", path)) => std::fs::read_to_string(path).map(|s| s.len().to_string()).map_err(|e| e.to_string()),
        Some(("write", path)) => std::fs::write(path, "x").map(|_| "written".into()).map_err(|e| e.to_string()),
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
    let sandbox =
        Sandbox::new().no_network().no_exec().no_ptrace().read_only_syscalls().read_only("/usr").best_effort(true);
    let pool = Pool::builder()
        .processes(2)
        .limits(Limits::new().cpu_time(Duration::from_secs(1)))
        .sandbox(sandbox)
        .build()
        .expect("a sandboxed pool (Linux)");
    println!("sandbox in effect: {}", pool.stats().sandbox.unwrap_or_default());
    let inputs = [
        "68656c6c6f",
        "read:/etc/passwd",
        "write:/tmp/sandboxed_decode.out",
        "connect:127.0.0.1:9",
        "exec:/bin/sh",
        "children:50",
        "spin:",
        "776f726c64",
    ];
    for input in inputs {
        report(input, pool.apply(decode, input.to_string()));
    }
    let stats = pool.stats();
    // Each denial or limit cost its worker, which the pool replaced.
    println!("containment: {}; tasks whose worker died: {}", stats.containment, stats.tasks_worker_died);

    // A private network: sockets may be made, but no address is reachable, not even this
    // program's own listener on the loopback.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener on the loopback");
    let parent = format!("connect:{}", listener.local_addr().expect("its address"));
    let net = Pool::builder()
        .processes(1)
        .sandbox(Sandbox::new().private_network().best_effort(true))
        .build()
        .expect("a pool with a private network (or without, by best effort)");
    println!("sandbox in effect: {}", net.stats().sandbox.unwrap_or_default());
    report("connect:<this program>", net.apply(decode, parent));
}

/// Prints what became of one input.
fn report(input: &str, outcome: Result<Result<String, String>, multiproc::TaskError>) {
    match outcome {
        Ok(Ok(value)) => println!("{input:>32} -> {value}"),
        Ok(Err(refused)) => println!("{input:>32} -> refused by the task: {refused}"),
        Err(stopped) => println!("{input:>32} -> stopped: {stopped}"),
    }
}
