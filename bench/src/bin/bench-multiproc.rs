//! multiproc's side of every workload: one function each, with the task bodies, inputs,
//! checks and reports of `work.rs`. A workload whose part of multiproc does not exist
//! yet returns `Outcome::Skipped("needs …")`, which the table shows as pending.
#![deny(unsafe_code)]

use std::time::{Duration, Instant};

use multiproc::manager::DictProxy;
use multiproc::{Chunksize, Connection, Manager, MapOptions, Pipe, Pool, Process, Queue, Sandbox, TaskOptions};

use multiproc_bench::args::{self, Args, Impl, Workload};
use multiproc_bench::report::{Latencies, Report};
use multiproc_bench::work::{self, Outcome, RunResult};

fn main() {
    // The pool's workers and the processes below are this program started again.
    multiproc::init();
    multiproc_bench::main(Impl::Multiproc, run);
}

fn run(a: &Args) -> RunResult {
    match a.workload {
        Workload::ProcessStart => process_start(a),
        Workload::W1 => w1(a),
        Workload::W2 => w2(a),
        Workload::W3 => w3(a),
        Workload::W4 => w4(a),
        Workload::W5 => w5(a),
        Workload::W6 => w6(a),
        Workload::W9 => w9(),
        Workload::W10 => w10(a),
        Workload::W11 => w11(a),
        Workload::W12 => w12(a),
        Workload::W13 => w13(a),
        Workload::Outstanding => outstanding(a),
        Workload::W7q => w7q(a),
        Workload::W7p => w7p(a),
        Workload::W8 => w8(a),
        Workload::RoundTrip | Workload::Throughput => Ok(Outcome::Skipped("a raw-socket baseline".into())),
    }
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

fn pool(workers: usize) -> Result<Pool, String> {
    Pool::new(workers).map_err(err)
}

/// The sandbox of `--sandbox WHAT`: `full` is every preset, a Landlock rule (read-only
/// `/usr`, nothing else) and a private network (where the kernel allows one); `seccomp`,
/// `landlock` and `net` are each part alone.
fn sandbox(what: &str) -> Sandbox {
    let seccomp = |s: Sandbox| s.no_network().no_exec().no_ptrace().read_only_syscalls();
    let net = |s: Sandbox| if Sandbox::support().private_network { s.private_network() } else { s };
    match what {
        "seccomp" => seccomp(Sandbox::new()),
        "landlock" => Sandbox::new().read_only("/usr"),
        "net" => net(Sandbox::new()),
        _ => net(seccomp(Sandbox::new()).read_only("/usr")),
    }
}

/// A pool of `workers`, sandboxed with `--sandbox` and forked from a template process
/// with `--fork-server`.
fn pool_for(a: &Args, workers: usize) -> Result<Pool, String> {
    let b = Pool::builder().processes(workers);
    let b = match &a.sandbox {
        Some(what) => b.sandbox(sandbox(what)),
        None => b,
    };
    let b = if a.fork_server { b.start_method(multiproc::StartMethod::ForkServer) } else { b };
    b.build().map_err(err)
}

/// What `--sandbox` confines, for the report.
fn sandbox_text(pool: &Pool) -> String {
    pool.stats().sandbox.unwrap_or_else(|| "none".into())
}

fn chunks(c: args::Chunksize) -> MapOptions {
    MapOptions::new().chunksize(match c {
        args::Chunksize::Default => Chunksize::Default,
        args::Chunksize::Fixed(n) => Chunksize::Fixed(n),
    })
}

/// Every worker runs one task first, as on the Python side.
fn warm(pool: &Pool, workers: usize) -> Result<(), String> {
    let opts = MapOptions::new().chunksize(Chunksize::Fixed(1));
    pool.map_async_with(work::warm_task, vec![(); workers], &opts).get().map_err(err)?;
    Ok(())
}

fn shut(pool: Pool) -> Result<(), String> {
    pool.close();
    pool.join().map_err(err)
}

/// W1: `map(f, 0..n)` on 2 workers with the given chunk size.
fn w1(a: &Args) -> RunResult {
    let pool = pool(2)?;
    warm(&pool, 2)?;
    let t = Instant::now();
    let out = pool.map_async_with(work::f, 0..a.n as u64, &chunks(a.chunksize)).get().map_err(err)?;
    let took = t.elapsed();
    shut(pool)?;
    let r = work::rate_report(a.n, took, work::doubled(&out, a.n));
    Ok(Outcome::Done(r.text("chunksize", a.chunksize.label())))
}

/// W2: 1 worker, 100 warm-up `apply`, then `n` timed one by one.
fn w2(a: &Args) -> RunResult {
    let pool = pool_for(a, 1)?;
    let sandbox = sandbox_text(&pool);
    if a.cross_cpu {
        multiproc_bench::cross_cpus(pool.stats().worker_pids[0])?;
    }
    warm(&pool, 1)?;
    for i in 0..100 {
        pool.apply(work::f, i).map_err(err)?;
    }
    let r = work::apply_round_trips(&pool, a.n)?;
    shut(pool)?;
    Ok(Outcome::Done(r.text("sandbox", &sandbox)))
}

/// W3: 2 workers, `n` `apply_async` submitted, then every `get` in order.
fn w3(a: &Args) -> RunResult {
    let pool = pool(2)?;
    warm(&pool, 2)?;
    let t = Instant::now();
    let handles: Vec<_> = (0..a.n as u64).map(|i| pool.apply_async(work::f, i)).collect();
    let out = handles.into_iter().map(|h| h.get()).collect::<Result<Vec<u64>, _>>().map_err(err)?;
    let took = t.elapsed();
    shut(pool)?;
    Ok(Outcome::Done(work::rate_report(a.n, took, work::doubled(&out, a.n))))
}

/// W4: from creating a 2-worker pool to the result of `f(21)`; then `close` + `join`.
/// With `--shared-fork-server` the pool's template is a `ForkServer` started first.
fn w4(a: &Args) -> RunResult {
    let shared = if a.shared_fork_server { Some(multiproc::ForkServer::start().map_err(err)?) } else { None };
    let t0 = Instant::now();
    let pool = match &shared {
        Some(server) => Pool::builder().processes(2).fork_server(server).build().map_err(err)?,
        None => pool_for(a, 2)?,
    };
    let created = t0.elapsed();
    let r = pool.apply(work::f, 21).map_err(err)?;
    let t1 = Instant::now();
    if r != 42 {
        return Err(format!("f(21) returned {r}"));
    }
    let sandbox = sandbox_text(&pool);
    shut(pool)?;
    let t2 = Instant::now();
    Ok(Outcome::Done(work::w4_report(created, t0, t1, t2).text("sandbox", &sandbox)))
}

/// W5: the serial run here, then `map(lcg, …, chunksize=1)` on 2 workers.
fn w5(a: &Args) -> RunResult {
    let tasks = a.n as u64;
    let (serial, serial_t) = work::w5_serial(a.iters, tasks);
    let pool = pool(2)?;
    warm(&pool, 2)?;
    let opts = MapOptions::new().chunksize(Chunksize::Fixed(1));
    let t = Instant::now();
    let par = pool.map_async_with(work::lcg_task, (0..tasks).map(|s| (a.iters, s)), &opts).get().map_err(err)?;
    let par_t = t.elapsed();
    shut(pool)?;
    Ok(Outcome::Done(work::w5_report(a.iters, &serial, serial_t, &par, par_t)))
}

/// W6: `map(len, …)` over `n` distinct 1 MiB buffers (serde bytes) on 2 workers.
fn w6(a: &Args) -> RunResult {
    let data = work::w6_payloads(a.n);
    let pool = pool(2)?;
    warm(&pool, 2)?;
    let t = Instant::now();
    let lens = pool.map_async_with(work::nbytes, data, &chunks(a.chunksize)).get().map_err(err)?;
    let took = t.elapsed();
    shut(pool)?;
    Ok(Outcome::Done(work::w6_report(a.n, took, &lens).text("chunksize", a.chunksize.label())))
}

/// W9: 20 tasks on 2 workers, task 5 SIGKILLs its worker; every item's result is kept
/// (`map_results`), then a new task, then what is left behind once the pool is gone.
fn w9() -> RunResult {
    let t = Instant::now();
    let pool = pool(2)?;
    let mut rec = work::CrashRecord {
        results_ok: 0,
        other_failures: Vec::new(),
        task5: String::new(),
        new_task: String::new(),
        new_task_ok: false,
        left_behind: Vec::new(),
        took: Duration::ZERO,
    };
    for (i, r) in pool.map_results(work::crash_task, 0..20u64).into_iter().enumerate() {
        match (i, r) {
            (5, Ok(v)) => rec.task5 = format!("returned {v}"),
            (5, Err(e)) => rec.task5 = format!("error: {e}"),
            (_, Ok(v)) if v == 2 * i as u64 => rec.results_ok += 1,
            (_, Ok(v)) => rec.other_failures.push(format!("task {i} returned {v}")),
            (_, Err(e)) => rec.other_failures.push(format!("task {i}: {e}")),
        }
    }
    match pool.apply(work::f, 100) {
        Ok(v) => {
            rec.new_task = format!("f(100) = {v}");
            rec.new_task_ok = v == 200;
        }
        Err(e) => rec.new_task = format!("error: {e}"),
    }
    shut(pool)?;
    rec.left_behind = work::children_left_after(Duration::from_secs(2));
    rec.took = t.elapsed();
    Ok(Outcome::Done(rec.report()))
}

/// Fault workloads: 2 warm workers, `n` tasks submitted one by one with `opts`, then
/// every outcome collected in order: (right values, errors, time).
fn faults(
    a: &Args,
    task: fn(u64) -> u64,
    opts: impl Fn() -> TaskOptions<u64>,
) -> Result<(usize, usize, Duration), String> {
    let pool = pool_for(a, 2)?;
    warm(&pool, 2)?;
    let t = Instant::now();
    let handles: Vec<_> = (0..a.n as u64).map(|i| pool.apply_async_with(task, i, opts())).collect();
    let (mut ok, mut errors) = (0, 0);
    for (i, h) in handles.into_iter().enumerate() {
        match h.get() {
            Ok(v) => ok += usize::from(v == 2 * i as u64),
            Err(_) => errors += 1,
        }
    }
    let took = t.elapsed();
    shut(pool)?;
    Ok((ok, errors, took))
}

/// W10 crash-heavy: every task with `i % 10 == 3` dies by a segfault.
fn w10(a: &Args) -> RunResult {
    let (ok, errors, took) = faults(a, work::segfault_task, TaskOptions::new)?;
    let due = (0..a.n).filter(|i| i % 10 == 3).count();
    Ok(Outcome::Done(work::fault_report(a.n, took, ok, errors, due)))
}

/// W11 timeout-heavy: every task with `i % 20 == 7` hangs; per-task timeout 200 ms.
fn w11(a: &Args) -> RunResult {
    let (ok, errors, took) = faults(a, work::hang_task, || TaskOptions::new().timeout(Duration::from_millis(200)))?;
    let due = (0..a.n).filter(|i| i % 20 == 7).count();
    // Every hang costs its worker the timeout; two workers share them.
    let floor = due as f64 * 0.2 / 2.0;
    let r = work::fault_report(a.n, took, ok, errors, due);
    Ok(Outcome::Done(r.num("floor_s", floor).num("to_floor", took.as_secs_f64() / floor)))
}

/// W12 respawn: every task SIGKILLs its worker; the rate is worker replacements per second.
fn w12(a: &Args) -> RunResult {
    let pool = pool_for(a, 2)?;
    warm(&pool, 2)?;
    let t = Instant::now();
    let handles: Vec<_> = (0..a.n as u64).map(|i| pool.apply_async(work::kill_self_task, i)).collect();
    let errors = handles.into_iter().map(|h| h.get()).filter(Result::is_err).count();
    let took = t.elapsed();
    let started = pool.stats().workers_started;
    shut(pool)?;
    let r = work::fault_report(a.n, took, 0, errors, a.n);
    Ok(Outcome::Done(
        r.num("replacements_per_s", a.n as f64 / took.as_secs_f64())
            .int("workers_started", started as usize)
            .text("start_method", if a.fork_server { "fork server" } else { "exec" }),
    ))
}

/// W13 preload: 8 workers and a 512 MiB read-only table. With the fork server the table
/// is the template's preload, shared copy-on-write; on the exec path each worker builds
/// its own. `up_ms`: from the start of `build` (the preload included) until all 8 workers
/// answered a first task; `workers_up_ms`: the same from the end of the preload; then each reads the whole table, and the PSS of every process
/// of the pool (workers, what they started, the template) is summed while they hold it.
fn w13(a: &Args) -> RunResult {
    const WORKERS: usize = 8;
    let t0 = Instant::now();
    let t0_ns = work::monotonic_ns();
    let b = Pool::builder().processes(WORKERS);
    let b =
        if a.fork_server { b.start_method(multiproc::StartMethod::ForkServer).preload(work::w13_preload) } else { b };
    let pool = b.build().map_err(err)?;
    let round = |read: bool| -> Result<Vec<work::W13Answer>, String> {
        let barrier =
            multiproc::Barrier::with_options(WORKERS as u32, None, Some(Duration::from_secs(60))).map_err(err)?;
        let opts = MapOptions::new().chunksize(Chunksize::Fixed(1));
        let out = pool.map_async_with(work::w13_task, vec![(barrier, read); WORKERS], &opts).get().map_err(err)?;
        let mut pids: Vec<u32> = out.iter().map(|r| r.0).collect();
        pids.sort_unstable();
        pids.dedup();
        if pids.len() != WORKERS {
            return Err(format!("the tasks ran on {} workers, not {WORKERS}", pids.len()));
        }
        Ok(out)
    };
    let idle = round(false)?;
    let up = t0.elapsed();
    // The workers' start counts from the end of the preload (in the template), or from
    // the start of the pool's creation without one.
    let preloaded_ns = idle[0].4.max(t0_ns);
    let workers_up_ms = (work::monotonic_ns().saturating_sub(preloaded_ns)) as f64 / 1e6;
    let t1 = Instant::now();
    let read = round(true)?;
    let read_took = t1.elapsed();
    // Everything the pool is, while its workers still hold the table: the workers, what
    // they started, and the fork server's template.
    let pool_pss_kb: u64 = work::descendants().into_iter().map(work::pss_kb).sum();
    shut(pool)?;
    if let Some(r) = read.iter().find(|r| r.1 != work::w13_sum()) {
        return Err(format!("worker {} read a sum of {}, not {}", r.0, r.1, work::w13_sum()));
    }
    let workers_pss_kb: u64 = read.iter().map(|r| r.2).sum();
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    Ok(Outcome::Done(
        Report::new()
            .flag("ok", true)
            .num("up_ms", up.as_secs_f64() * 1e3)
            .num("workers_up_ms", workers_up_ms)
            .num("read_ms", read_took.as_secs_f64() * 1e3)
            .num("pss_ratio", pool_pss_kb as f64 * 1024.0 / work::W13_TABLE as f64)
            .num("pool_pss_mib", pool_pss_kb as f64 / 1024.0)
            .num("workers_pss_mib", workers_pss_kb as f64 / 1024.0)
            .num("idle_pss_mib", median(idle.iter().map(|r| r.2).collect()) as f64 / 1024.0)
            .num("idle_rss_mib", median(idle.iter().map(|r| r.3).collect()) as f64 / 1024.0)
            .text("start_method", if a.fork_server { "fork server + preload" } else { "exec" }),
    ))
}

/// The parent's memory per outstanding task: a 1-worker pool whose worker is held by a
/// task waiting on an `Event`, `n` `apply_async` submitted behind it (their handles
/// kept, as a caller keeps them), the growth of the parent's RSS over `n`; then the
/// event is set and every result checked.
fn outstanding(a: &Args) -> RunResult {
    let pool = pool(1)?;
    warm(&pool, 1)?;
    let gate = multiproc::Event::new().map_err(err)?;
    let held = pool.apply_async(work::wait_for, gate.clone());
    let before = work::rss_kb(std::process::id());
    let handles: Vec<_> = (0..a.n as u64).map(|i| pool.apply_async(work::f, i)).collect();
    let after = work::rss_kb(std::process::id());
    gate.set();
    held.get().map_err(err)?;
    let out = handles.into_iter().map(|h| h.get()).collect::<Result<Vec<u64>, _>>().map_err(err)?;
    shut(pool)?;
    let per_task = after.saturating_sub(before) as f64 * 1024.0 / a.n as f64;
    Ok(Outcome::Done(Report::new().flag("ok", work::doubled(&out, a.n)).int("n", a.n).num("bytes_per_task", per_task)))
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
    if a.cross_cpu {
        multiproc_bench::cross_cpus(child.pid().ok_or("the child has no pid")?)?;
    }
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
