//! The Rust peer: `procspawn`'s `Pool` (one call in flight per worker, two ipc-channel
//! socketpairs per call) and `spawn` (one process per call).
//!
//! procspawn has no `map`, chunking, queue, pipe or manager: `map` is a loop of
//! `Pool::spawn`, chunked by hand like Python's `map` when a chunk size is given;
//! W7q, W7p and W8 are not applicable.
#![deny(unsafe_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use procspawn::{JoinHandle, Pool};
use serde::Serialize;
use serde::de::DeserializeOwned;

use multiproc_bench::args::{Args, Impl, Workload};
use multiproc_bench::report::{Latencies, Report};
use multiproc_bench::work::{self, Outcome, RunResult};

/// Calls outstanding at once for small arguments. Each holds three descriptors until it
/// is joined, and the descriptor limit here (20 000) would not hold W3's 20 000 at once.
const WINDOW: usize = 1024;

/// Calls outstanding at once for arguments larger than a socket buffer: one per worker.
/// With more, the pool deadlocks: `spawn` blocks sending an argument no worker reads
/// yet, while each worker's monitor waits for its finished call to be joined (it hands
/// results over through a rendezvous channel).
const LARGE_WINDOW: usize = 2;

fn main() {
    // procspawn's children are this program started again.
    procspawn::init();
    multiproc_bench::main(Impl::Procspawn, run);
}

fn run(a: &Args) -> RunResult {
    match a.workload {
        Workload::W1 => w1(a),
        Workload::W2 => w2(a),
        Workload::W3 => w3(a),
        Workload::W4 => w4(),
        Workload::W5 => w5(a),
        Workload::W6 => w6(a),
        Workload::W9 => w9(),
        Workload::ProcessStart => process_start(a),
        Workload::W7q | Workload::W7p | Workload::W8 => {
            Ok(Outcome::Skipped("procspawn has no queue, pipe or manager".into()))
        }
        Workload::RoundTrip | Workload::Throughput => Ok(Outcome::Skipped("a raw-socket baseline".into())),
        Workload::W10 | Workload::W11 | Workload::W12 => {
            Ok(Outcome::Skipped("the fault workloads compare with pebble and billiard".into()))
        }
        Workload::W13 => Ok(Outcome::Skipped("procspawn has no pool with a preload".into())),
        Workload::Outstanding => Ok(Outcome::Skipped("a multiproc memory row".into())),
    }
}

fn err(e: procspawn::SpawnError) -> String {
    format!("procspawn: {e}")
}

fn pool(workers: usize) -> Result<Pool, String> {
    Pool::new(workers).map_err(err)
}

/// Every worker runs one task first, as on the Python side.
fn warm(pool: &Pool, workers: usize) -> Result<(), String> {
    let handles: Vec<_> = (0..workers).map(|_| pool.spawn((), work::warm_task)).collect();
    for h in handles {
        h.join().map_err(err)?;
    }
    Ok(())
}

/// Runs `func` over `inputs` in order with at most `window` calls outstanding.
fn map_windowed<A, R>(
    pool: &Pool,
    window: usize,
    inputs: impl IntoIterator<Item = A>,
    func: fn(A) -> R,
) -> Result<Vec<R>, String>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    let mut out = Vec::new();
    let mut pending: VecDeque<JoinHandle<R>> = VecDeque::with_capacity(window);
    for x in inputs {
        if pending.len() == window {
            out.push(pending.pop_front().expect("window is full").join().map_err(err)?);
        }
        pending.push_back(pool.spawn(x, func));
    }
    for h in pending {
        out.push(h.join().map_err(err)?);
    }
    Ok(out)
}

fn w1(a: &Args) -> RunResult {
    let n = a.n;
    let chunk = a.chunksize.resolve(n, 2);
    let pool = pool(2)?;
    warm(&pool, 2)?;
    let t = Instant::now();
    let out: Vec<u64> = if chunk == 1 {
        map_windowed(&pool, WINDOW, 0..n as u64, work::f)?
    } else {
        let chunks = (0..n as u64).collect::<Vec<_>>().chunks(chunk).map(<[u64]>::to_vec).collect::<Vec<_>>();
        map_windowed(&pool, WINDOW, chunks, work::f_chunk)?.into_iter().flatten().collect()
    };
    let took = t.elapsed();
    pool.shutdown();
    let r = work::rate_report(n, took, work::doubled(&out, n));
    Ok(Outcome::Done(r.text("chunksize", a.chunksize.label()).int("window", WINDOW)))
}

fn w2(a: &Args) -> RunResult {
    let pool = pool(1)?;
    warm(&pool, 1)?;
    let call = |x: u64| pool.spawn(x, work::f).join().map_err(err);
    for i in 0..100 {
        call(i)?;
    }
    let mut lat = Latencies::with_capacity(a.n);
    let t_all = Instant::now();
    for i in 0..a.n as u64 {
        let t = Instant::now();
        let r = call(i)?;
        lat.push_us(t.elapsed().as_secs_f64() * 1e6);
        if r != 2 * i {
            return Err(format!("f({i}) returned {r}"));
        }
    }
    let took = t_all.elapsed();
    pool.shutdown();
    Ok(Outcome::Done(Report::new().int("n", a.n).num("seconds", took.as_secs_f64()).extend(lat.report())))
}

fn w3(a: &Args) -> RunResult {
    let pool = pool(2)?;
    warm(&pool, 2)?;
    let t = Instant::now();
    let out = map_windowed(&pool, WINDOW, 0..a.n as u64, work::f)?;
    let took = t.elapsed();
    pool.shutdown();
    Ok(Outcome::Done(work::rate_report(a.n, took, work::doubled(&out, a.n)).int("window", WINDOW)))
}

fn w4() -> RunResult {
    let t0 = Instant::now();
    let pool = pool(2)?;
    let created = t0.elapsed();
    let r = pool.spawn(21, work::f).join().map_err(err)?;
    let t1 = Instant::now();
    if r != 42 {
        return Err(format!("f(21) returned {r}"));
    }
    pool.shutdown();
    drop(pool);
    let t2 = Instant::now();
    Ok(Outcome::Done(work::w4_report(created, t0, t1, t2)))
}

fn w5(a: &Args) -> RunResult {
    let tasks = a.n as u64;
    let (serial, serial_t) = work::w5_serial(a.iters, tasks);
    let pool = pool(2)?;
    warm(&pool, 2)?;
    let t = Instant::now();
    let par = map_windowed(&pool, WINDOW, (0..tasks).map(|s| (a.iters, s)), work::lcg_task)?;
    let par_t = t.elapsed();
    pool.shutdown();
    Ok(Outcome::Done(work::w5_report(a.iters, &serial, serial_t, &par, par_t)))
}

fn w6(a: &Args) -> RunResult {
    let data = work::w6_payloads(a.n);
    let chunk = a.chunksize.resolve(a.n, 2);
    let pool = pool(2)?;
    warm(&pool, 2)?;
    let t = Instant::now();
    let lens: Vec<u64> = if chunk == 1 {
        map_windowed(&pool, LARGE_WINDOW, data, work::nbytes)?
    } else {
        let mut chunks = Vec::new();
        let mut it = data.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(chunk).collect::<Vec<_>>());
        }
        map_windowed(&pool, LARGE_WINDOW, chunks, work::nbytes_chunk)?.into_iter().flatten().collect()
    };
    let took = t.elapsed();
    pool.shutdown();
    Ok(Outcome::Done(
        work::w6_report(a.n, took, &lens).text("chunksize", a.chunksize.label()).int("window", LARGE_WINDOW),
    ))
}

fn w9() -> RunResult {
    let t = Instant::now();
    let pool = pool(2)?;
    let handles: Vec<JoinHandle<u64>> = (0..20u64).map(|i| pool.spawn(i, work::crash_task)).collect();
    let mut rec = work::CrashRecord {
        results_ok: 0,
        other_failures: Vec::new(),
        task5: String::new(),
        new_task: String::new(),
        new_task_ok: false,
        left_behind: Vec::new(),
        took: Duration::ZERO,
    };
    for (i, h) in handles.into_iter().enumerate() {
        match (i, h.join()) {
            (5, Ok(v)) => rec.task5 = format!("returned {v}"),
            (5, Err(e)) => rec.task5 = format!("error: {e}"),
            (_, Ok(v)) if v == 2 * i as u64 => rec.results_ok += 1,
            (_, Ok(v)) => rec.other_failures.push(format!("task {i} returned {v}")),
            (_, Err(e)) => rec.other_failures.push(format!("task {i}: {e}")),
        }
    }
    match pool.spawn(100, work::f).join() {
        Ok(v) => {
            rec.new_task = format!("f(100) = {v}");
            rec.new_task_ok = v == 200;
        }
        Err(e) => rec.new_task = format!("error: {e}"),
    }
    pool.shutdown();
    drop(pool);
    rec.left_behind = work::children_left_after(Duration::from_secs(2));
    rec.took = t.elapsed();
    Ok(Outcome::Done(rec.report()))
}

/// One process per call: `spawn(f, ())` then `join`, `n` times; medians.
fn process_start(a: &Args) -> RunResult {
    let mut start = Vec::with_capacity(a.n);
    let mut stop = Vec::with_capacity(a.n);
    for _ in 0..a.n.max(1) {
        let t0 = Instant::now();
        let h = procspawn::spawn((), work::nothing);
        let t1 = Instant::now();
        h.join().map_err(err)?;
        start.push(t1 - t0);
        stop.push(t1.elapsed());
    }
    Ok(Outcome::Done(
        work::process_start_report(&start, &stop).text(
            "measures",
            "procspawn::spawn (exec, connect, send the call) then join (result back, process reaped)",
        ),
    ))
}
