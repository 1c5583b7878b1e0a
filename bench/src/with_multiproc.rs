//! multiproc's side of every workload.
//!
//! Adding a workload once its part has landed is one function: write `fn wN(a: &Args) ->
//! RunResult` (the procspawn twin in `with_procspawn.rs` shows the shape for the pool
//! workloads; `work.rs` has the task bodies, inputs, checks and reports) and put it in
//! place of its `pending` arm in `run`.

use std::time::{Duration, Instant};

use multiproc::manager::DictProxy;
use multiproc::{Connection, Manager, Pipe, Process, Queue};

use crate::args::{Args, Workload};
use crate::report::{Latencies, Report};
use crate::work::{self, Outcome, RunResult};

pub fn run(a: &Args) -> RunResult {
    match a.workload {
        Workload::ProcessStart => process_start(a),
        Workload::W1 | Workload::W2 | Workload::W3 | Workload::W4 | Workload::W5 | Workload::W6 => {
            pending("multiproc::Pool (issue 3)")
        }
        Workload::W9 => pending("multiproc::Pool with worker supervision (issues 3, 4)"),
        Workload::W7q => w7q(a),
        Workload::W7p => w7p(a),
        Workload::W8 => w8(a),
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

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Starts `p` and returns it, for workloads whose children report through a queue or pipe.
fn started(mut p: Process) -> Result<Process, String> {
    p.start().map_err(err)?;
    Ok(p)
}

fn joined(p: &Process) -> Result<(), String> {
    p.join().map_err(err)?;
    match p.exitcode() {
        Some(0) => Ok(()),
        code => Err(format!("{} exited with {code:?}", p.get_name())),
    }
}

/// What W7q's processes report: (who, monotonic clock in ns, sum).
type Stamp = (u8, u64, u64);
const PRODUCER_STARTED: u8 = 0;
const CONSUMER_ENDED: u8 = 1;

fn w7q_producer((q, n, report): (Queue<u64>, u64, Queue<Stamp>)) {
    let t0 = work::monotonic_ns();
    for i in 0..n {
        q.put(i).expect("put");
    }
    report.put((PRODUCER_STARTED, t0, 0)).expect("report");
}

fn w7q_consumer((q, n, report): (Queue<u64>, u64, Queue<Stamp>)) {
    let mut sum = 0;
    for _ in 0..n {
        sum += q.get().expect("get");
    }
    report.put((CONSUMER_ENDED, work::monotonic_ns(), sum)).expect("report");
}

/// W7q: a producer process puts 0..n on a `Queue`, a consumer process gets and sums them;
/// timed from the producer's first put to the consumer's last get, on the monotonic clock.
fn w7q(a: &Args) -> RunResult {
    let n = a.n as u64;
    let q = Queue::<u64>::new().map_err(err)?;
    let report = Queue::<Stamp>::new().map_err(err)?;
    let wall = Instant::now();
    let consumer = started(Process::new(w7q_consumer, (q.clone(), n, report.clone())))?;
    let producer = started(Process::new(w7q_producer, (q, n, report.clone())))?;
    let (mut start, mut end) = (None, None);
    for _ in 0..2 {
        match report.get().map_err(err)? {
            (PRODUCER_STARTED, t, _) => start = Some(t),
            (_, t, sum) => end = Some((t, sum)),
        }
    }
    joined(&producer)?;
    joined(&consumer)?;
    let wall = wall.elapsed();
    let (Some(t0), Some((t1, sum))) = (start, end) else { return Err("a process did not report".into()) };
    let secs = t1.saturating_sub(t0) as f64 / 1e9;
    Ok(Outcome::Done(
        Report::new()
            .int("n", n)
            .num("seconds", secs)
            .num("msgs_per_s", n as f64 / secs)
            .num("wall_incl_process_start_s", wall.as_secs_f64())
            .flag("ok", sum == n * (n - 1) / 2),
    ))
}

fn w7p_echo(conn: Connection<u64>) {
    // Until the parent closes its end.
    while let Ok(x) = conn.recv() {
        conn.send(x).expect("echo");
    }
}

/// W7p: a child echoes small integers over a duplex `Pipe`; 200 warm-up, then `n` timed
/// round trips.
fn w7p(a: &Args) -> RunResult {
    let (ours, theirs) = Pipe::duplex::<u64>().map_err(err)?;
    let child = started(Process::new(w7p_echo, theirs))?;
    let round_trip = |x: u64| -> Result<(), String> {
        ours.send(x).map_err(err)?;
        let back = ours.recv().map_err(err)?;
        if back == x { Ok(()) } else { Err(format!("sent {x}, got {back} back")) }
    };
    for _ in 0..200 {
        round_trip(12345)?;
    }
    let mut lat = Latencies::with_capacity(a.n);
    let t0 = Instant::now();
    for _ in 0..a.n {
        let t = Instant::now();
        round_trip(12345)?;
        lat.push_us(t.elapsed().as_secs_f64() * 1e6);
    }
    let took = t0.elapsed();
    drop(ours);
    joined(&child)?;
    Ok(Outcome::Done(
        Report::new()
            .int("n", a.n)
            .num("seconds", took.as_secs_f64())
            .num("rt_us", took.as_secs_f64() * 1e6 / a.n as f64)
            .extend(lat.report()),
    ))
}

/// What W8's child reports: write time, read time (ns) and the sum it read.
type DictTimes = (u64, u64, u64);

fn w8_child((d, n, report): (DictProxy<u64, u64>, u64, Connection<DictTimes>)) {
    let t0 = Instant::now();
    for k in 0..n {
        d.set(k, k).expect("d[k] = k");
    }
    let t1 = Instant::now();
    let mut sum = 0;
    for k in 0..n {
        sum += d.get(&k).expect("d[k]").expect("a key just written");
    }
    let t2 = Instant::now();
    let ns = |d: Duration| d.as_nanos() as u64;
    report.send((ns(t1 - t0), ns(t2 - t1), sum)).expect("report");
}

/// W8: a `Manager` dict made here; a child does `n` writes `d[k] = k` (`set`, which does
/// not wait for the server; the reads after it do), then `n` reads.
fn w8(a: &Args) -> RunResult {
    let n = a.n as u64;
    let mut manager = Manager::start().map_err(err)?;
    let d = manager.dict::<u64, u64>().map_err(err)?;
    let (ours, theirs) = Pipe::duplex::<DictTimes>().map_err(err)?;
    let child = started(Process::new(w8_child, (d, n, theirs)))?;
    let (w_ns, r_ns, sum) = ours.recv().map_err(err)?;
    joined(&child)?;
    manager.shutdown().map_err(err)?;
    let (w, r) = (w_ns as f64 / 1e9, r_ns as f64 / 1e9);
    Ok(Outcome::Done(
        Report::new()
            .int("n", n)
            .num("write_ops_per_s", n as f64 / w)
            .num("read_ops_per_s", n as f64 / r)
            .num("ops_per_s", 2.0 * n as f64 / (w + r))
            .flag("ok", sum == n * (n - 1) / 2),
    ))
}
