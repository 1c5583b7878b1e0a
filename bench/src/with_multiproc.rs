//! multiproc's side of every workload.
//!
//! Adding a workload once its part has landed is one function: write `fn wN(a: &Args) ->
//! RunResult` (the procspawn twin in `with_procspawn.rs` shows the shape, `work.rs` has
//! the task bodies, inputs, checks and reports) and put it in place of its `pending` arm.

use std::time::Instant;

use multiproc::Process;

use crate::args::{Args, Workload};
use crate::work::{self, Outcome, RunResult};

pub fn run(a: &Args) -> RunResult {
    match a.workload {
        Workload::ProcessStart => process_start(a),
        Workload::W1 | Workload::W2 | Workload::W3 | Workload::W4 | Workload::W5 | Workload::W6 => {
            pending("multiproc::Pool (issue 3)")
        }
        Workload::W9 => pending("multiproc::Pool with worker supervision (issues 3, 4)"),
        Workload::W7q => pending("multiproc::Queue (issue 5)"),
        Workload::W7p => pending("multiproc::Pipe (issue 5)"),
        Workload::W8 => pending("multiproc::Manager (issue 6)"),
        Workload::RoundTrip | Workload::Throughput => Ok(Outcome::Skipped("a raw-socket baseline".into())),
    }
}

fn pending(what: &str) -> RunResult {
    Ok(Outcome::Skipped(format!("needs {what}")))
}

/// W4-like, for what exists today: `Process::start` (re-exec, handshake) then `join`
/// (the function returns, the child exits and is reaped), `n` times; medians.
fn process_start(a: &Args) -> RunResult {
    let mut start = Vec::with_capacity(a.n);
    let mut stop = Vec::with_capacity(a.n);
    for _ in 0..a.n.max(1) {
        let t0 = Instant::now();
        let mut p = Process::new(work::nothing, ());
        p.start().map_err(|e| e.to_string())?;
        let t1 = Instant::now();
        p.join().map_err(|e| e.to_string())?;
        if p.exitcode() != Some(0) {
            return Err(format!("the child exited with {:?}", p.exitcode()));
        }
        start.push(t1 - t0);
        stop.push(t1.elapsed());
    }
    Ok(Outcome::Done(
        work::process_start_report(&start, &stop)
            .text("measures", "Process::start (exec + handshake) then join (function returns, child reaped)"),
    ))
}
