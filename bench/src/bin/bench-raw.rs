//! The limits: a Unix socketpair between this process and a child, with nothing on it
//! but bytes. The child is this binary started again with a hidden role, its end of the
//! socket as standard input.
#![deny(unsafe_code)]

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use multiproc_bench::args::{Args, Impl, Workload};
use multiproc_bench::report::{Latencies, Report};
use multiproc_bench::work::{MIB, Outcome, RunResult};

const ECHO: &str = "__raw-echo";
const SINK: &str = "__raw-sink";

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    run_child_role(&argv);
    multiproc_bench::main(Impl::Raw, run);
}

fn run(a: &Args) -> RunResult {
    match a.workload {
        Workload::RoundTrip => round_trip(a.n, a.cross_cpu),
        Workload::Throughput => throughput(a.n),
        _ => Ok(Outcome::Skipped("raw baselines are rt and tput".into())),
    }
}

/// If this process was started as a raw baseline's child, runs that role and exits.
fn run_child_role(argv: &[String]) {
    let role = match argv.first().map(String::as_str) {
        Some(ECHO) => echo as fn(&mut UnixStream) -> std::io::Result<()>,
        Some(SINK) => sink,
        _ => return,
    };
    let sock = std::io::stdin().as_fd().try_clone_to_owned().map(UnixStream::from);
    let code = match sock.and_then(|mut s| role(&mut s)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}: {e}", argv[0]);
            1
        }
    };
    std::process::exit(code);
}

/// Echoes every 8 bytes back until the parent closes.
fn echo(s: &mut UnixStream) -> std::io::Result<()> {
    let mut m = [0u8; 8];
    loop {
        match s.read_exact(&mut m) {
            Ok(()) => s.write_all(&m)?,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Reads everything until the parent shuts its side, then answers with the byte count.
fn sink(s: &mut UnixStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; MIB];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf)? {
            0 => break,
            n => total += n as u64,
        }
    }
    s.write_all(&total.to_le_bytes())
}

fn start(role: &str) -> Result<(UnixStream, Child), String> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .arg(role)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .spawn()
        .map_err(|e| format!("cannot start the raw child: {e}"))?;
    Ok((ours, child))
}

fn finish(ours: UnixStream, mut child: Child) -> Result<(), String> {
    drop(ours);
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() { Ok(()) } else { Err(format!("raw child ended with {status}")) }
}

/// 8-byte round trips: 200 warm-up, then `n` timed one by one.
fn round_trip(n: usize, cross_cpu: bool) -> RunResult {
    let (mut s, child) = start(ECHO)?;
    if cross_cpu {
        multiproc_bench::cross_cpus(child.id())?;
    }
    let io = |e: std::io::Error| e.to_string();
    let mut m = 12345u64.to_le_bytes();
    for _ in 0..200 {
        s.write_all(&m).map_err(io)?;
        s.read_exact(&mut m).map_err(io)?;
    }
    let mut lat = Latencies::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&m).map_err(io)?;
        s.read_exact(&mut m).map_err(io)?;
        lat.push_us(t.elapsed().as_secs_f64() * 1e6);
    }
    let took = t0.elapsed();
    finish(s, child)?;
    Ok(Outcome::Done(
        Report::new()
            .int("n", n)
            .num("seconds", took.as_secs_f64())
            .num("rt_us", took.as_secs_f64() * 1e6 / n as f64)
            .extend(lat.report()),
    ))
}

/// `mib` writes of 1 MiB, timed until the child confirms it read every byte.
fn throughput(mib: usize) -> RunResult {
    let (mut s, child) = start(SINK)?;
    let io = |e: std::io::Error| e.to_string();
    let buf = vec![0x5au8; MIB];
    let t = Instant::now();
    for _ in 0..mib {
        s.write_all(&buf).map_err(io)?;
    }
    s.shutdown(std::net::Shutdown::Write).map_err(io)?;
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack).map_err(io)?;
    let took = t.elapsed();
    finish(s, child)?;
    let got = u64::from_le_bytes(ack);
    Ok(Outcome::Done(
        Report::new()
            .int("n", mib)
            .num("seconds", took.as_secs_f64())
            .num("mib_per_s", mib as f64 / took.as_secs_f64())
            .flag("ok", got == (mib * MIB) as u64),
    ))
}
