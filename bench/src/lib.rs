//! `multiproc-bench <impl> <workload> [--chunksize N|default] [--n N] [--iters N]`
//!
//! Runs one workload of the benchmark suite (W1–W9, see the repository's BENCHMARKS.md)
//! on one implementation and prints one JSON line with the keys the Python side prints
//! (`tasks_per_s`, `mean_us`/`p50_us`/`p99_us`, `startup_ms`/`shutdown_ms`, `speedup`,
//! `mib_per_s`, `msgs_per_s`, `rt_us`, `ops_per_s`), plus `impl` and `workload`. A workload
//! an implementation cannot run yet prints `"skipped": "<what is missing>"`.
//! `bench/run.sh` runs the whole table.

mod args;
mod raw;
mod report;
mod with_cluster;
mod with_multiproc;
mod with_procspawn;
mod with_rayon;
mod work;

use args::{Args, Impl, USAGE};
use report::Report;
use work::Outcome;

fn main() {
    // Children of both libraries are this binary started again: they must stop here.
    multiproc::init();
    procspawn::init();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    raw::run_child_role(&argv);

    let args = match Args::parse(&argv) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("multiproc-bench: {msg}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let outcome = match args.imp {
        Impl::Multiproc => with_multiproc::run(&args),
        Impl::Procspawn => with_procspawn::run(&args),
        Impl::Raw => raw::run(&args),
        Impl::Rayon => with_rayon::run(&args),
        Impl::Cluster => with_cluster::run(&args),
    };
    let line = Report::new().text("impl", args.imp.name()).text("workload", args.workload.name());
    match outcome {
        Ok(Outcome::Done(r)) => println!("{}", line.extend(r).to_json()),
        Ok(Outcome::Skipped(why)) => println!("{}", line.text("skipped", why).to_json()),
        Err(e) => {
            println!("{}", line.text("error", e.as_str()).to_json());
            eprintln!("multiproc-bench {} {}: {e}", args.imp.name(), args.workload.name());
            std::process::exit(1);
        }
    }
}
