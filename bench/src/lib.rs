//! The benchmark harness of W1–W9 (see the repository's BENCHMARKS.md): one binary per
//! implementation, `bench-<impl> <workload> [--chunksize N|default] [--n N] [--iters N]`.
//!
//! Each run measures one workload and prints one JSON line with the keys the Python side
//! prints (`tasks_per_s`, `mean_us`/`p50_us`/`p99_us`, `startup_ms`/`shutdown_ms`,
//! `speedup`, `mib_per_s`, `msgs_per_s`, `rt_us`, `ops_per_s`), plus `impl` and
//! `workload`. A workload an implementation cannot run prints `"skipped": "<why>"`.
//! `bench/run.sh` runs the whole table.
//!
//! Why a binary each: a pool's workers are its program started again, so what that
//! program links is part of every process start (W4). Each implementation is measured
//! from a program that contains only itself, as its users' programs would.
#![deny(unsafe_code)]

pub mod args;
pub mod report;
pub mod work;

use args::{Args, Impl};
use report::Report;
use work::{Outcome, RunResult};

/// For `--cross-cpu`: pins the calling thread to the first CPU this process may use and
/// the main thread of process `other` (a child) to the second, so that every wake-up
/// between them crosses CPUs, which an unpinned run gets only by chance.
pub fn cross_cpus(other: u32) -> Result<(), String> {
    use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
    let allowed = sched_getaffinity(None).map_err(|e| e.to_string())?;
    let mut cpus = (0..CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c));
    let (Some(ours), Some(theirs)) = (cpus.next(), cpus.next()) else {
        return Err("--cross-cpu needs two CPUs".into());
    };
    let pin = |pid: Option<rustix::process::Pid>, cpu: usize| {
        let mut set = CpuSet::new();
        set.set(cpu);
        sched_setaffinity(pid, &set).map_err(|e| e.to_string())
    };
    let other = rustix::process::Pid::from_raw(other as i32).ok_or("no such process")?;
    pin(Some(other), theirs)?;
    pin(None, ours)
}

/// The `main` of every `bench-<impl>` binary: parses the command line, runs the
/// workload with `run` and prints its JSON line (exit code 1 on an error, 2 on bad usage).
pub fn main(imp: Impl, run: fn(&Args) -> RunResult) {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match Args::parse(imp, &argv) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("bench-{}: {msg}\n{}", imp.name(), args::usage(imp));
            std::process::exit(2);
        }
    };
    let line = Report::new().text("impl", imp.name()).text("workload", args.workload.name());
    match run(&args) {
        Ok(Outcome::Done(r)) => println!("{}", line.extend(r).to_json()),
        Ok(Outcome::Skipped(why)) => println!("{}", line.text("skipped", why).to_json()),
        Err(e) => {
            println!("{}", line.text("error", e.as_str()).to_json());
            eprintln!("bench-{} {}: {e}", imp.name(), args.workload.name());
            std::process::exit(1);
        }
    }
}
