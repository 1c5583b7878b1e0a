//! The W5 ceiling: the same CPU-bound map on 2 rayon threads in one process.
#![deny(unsafe_code)]

use std::time::Instant;

use rayon::prelude::*;

use multiproc_bench::args::{Args, Impl, Workload};
use multiproc_bench::work::{self, Outcome, RunResult};

fn main() {
    multiproc_bench::main(Impl::Rayon, run);
}

fn run(a: &Args) -> RunResult {
    if a.workload != Workload::W5 {
        return Ok(Outcome::Skipped("rayon is the W5 ceiling only".into()));
    }
    let tasks = a.n as u64;
    let (serial, serial_t) = work::w5_serial(a.iters, tasks);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().map_err(|e| e.to_string())?;
    let iters = a.iters;
    let t = Instant::now();
    let par: Vec<u64> = pool.install(|| (0..tasks).into_par_iter().map(|s| work::lcg(iters, s)).collect());
    let par_t = t.elapsed();
    Ok(Outcome::Done(work::w5_report(a.iters, &serial, serial_t, &par, par_t)))
}
