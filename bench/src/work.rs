//! What every implementation runs: the task bodies of WORKLOADS.md, their inputs and checks.

use std::time::{Duration, Instant};

use crate::report::Report;

/// What a run produced: a result line, or the reason it could not run yet.
pub enum Outcome {
    Done(Report),
    Skipped(String),
}

pub type RunResult = Result<Outcome, String>;

/// The tiny task of W1–W4: `f(x) = x * 2`.
pub fn f(x: u64) -> u64 {
    x * 2
}

/// W1 with a chunk per task: `f` over a slice.
pub fn f_chunk(xs: Vec<u64>) -> Vec<u64> {
    xs.into_iter().map(f).collect()
}

/// Whether `out[i] == 2 * i` for every `i < n`.
/// W2's timed part: `n` `apply(f, i)` one after the other on `pool` (a local pool or a
/// cluster's), each checked: the report of their latencies and of the whole run.
pub fn apply_round_trips(pool: &multiproc::Pool, n: usize) -> Result<Report, String> {
    let mut lat = crate::report::Latencies::with_capacity(n);
    let t_all = Instant::now();
    for i in 0..n as u64 {
        let t = Instant::now();
        let r = pool.apply(f, i).map_err(|e| e.to_string())?;
        lat.push_us(t.elapsed().as_secs_f64() * 1e6);
        if r != 2 * i {
            return Err(format!("f({i}) returned {r}"));
        }
    }
    let took = t_all.elapsed();
    Ok(Report::new().int("n", n).num("seconds", took.as_secs_f64()).extend(lat.report()))
}

pub fn doubled(out: &[u64], n: usize) -> bool {
    out.len() == n && out.iter().enumerate().all(|(i, v)| *v == 2 * i as u64)
}

const LCG_A: u64 = 6_364_136_223_846_793_005;
const LCG_C: u64 = 1_442_695_040_888_963_407;

/// W5's task: `iters` rounds of `x = x·A + C (mod 2^64); x ^= x >> 29` from `x = seed`.
pub fn lcg(iters: u64, seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..iters {
        x = x.wrapping_mul(LCG_A).wrapping_add(LCG_C);
        x ^= x >> 29;
    }
    x
}

/// `lcg` taking its arguments as one value, as a pool task does.
pub fn lcg_task((iters, seed): (u64, u64)) -> u64 {
    lcg(iters, seed)
}

/// W5's serial run in the parent: the results and the time it took.
pub fn w5_serial(iters: u64, tasks: u64) -> (Vec<u64>, Duration) {
    let t = Instant::now();
    let out = (0..tasks).map(|s| lcg(iters, s)).collect();
    (out, t.elapsed())
}

/// W4's report: pool creation, create → first result (`t0` → `t1`), close + join (`t1` → `t2`).
pub fn w4_report(created: Duration, t0: Instant, t1: Instant, t2: Instant) -> Report {
    Report::new()
        .num("create_ms", created.as_secs_f64() * 1e3)
        .num("startup_ms", (t1 - t0).as_secs_f64() * 1e3)
        .num("shutdown_ms", (t2 - t1).as_secs_f64() * 1e3)
}

/// W5's report, from the serial and parallel runs.
pub fn w5_report(iters: u64, serial: &[u64], serial_t: Duration, parallel: &[u64], parallel_t: Duration) -> Report {
    let tasks = serial.len();
    let checksum = serial.iter().fold(0u64, |acc, v| acc ^ v);
    Report::new()
        .int("iters", iters)
        .int("tasks", tasks)
        .num("serial_s", serial_t.as_secs_f64())
        .num("per_task_ms", serial_t.as_secs_f64() / tasks as f64 * 1e3)
        .num("parallel_s", parallel_t.as_secs_f64())
        .num("speedup", serial_t.as_secs_f64() / parallel_t.as_secs_f64())
        .text("checksum", checksum.to_string())
        .flag("ok", serial == parallel)
}

/// W6's byte buffers: multiproc's `Bytes`, which serde sees as one `bytes` value (copied
/// in one go) where a `Vec<u8>` would go element by element. procspawn gets the same type:
/// "200 distinct 1 MiB byte buffers" is what a byte buffer type is for.
pub use multiproc::Bytes;

pub const MIB: usize = 1 << 20;

/// W6's input: `n` distinct 1 MiB buffers (buffer `i` is filled with `i mod 256`).
pub fn w6_payloads(n: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(vec![i as u8; MIB])).collect()
}

/// W6's task: the length of a buffer.
pub fn nbytes(b: Bytes) -> u64 {
    b.len() as u64
}

/// W6 with a chunk per task.
pub fn nbytes_chunk(bs: Vec<Bytes>) -> Vec<u64> {
    bs.into_iter().map(nbytes).collect()
}

/// W6's report.
pub fn w6_report(n: usize, took: Duration, lens: &[u64]) -> Report {
    Report::new()
        .int("n", n)
        .num("seconds", took.as_secs_f64())
        .num("mib_per_s", n as f64 * MIB as f64 / (1 << 20) as f64 / took.as_secs_f64())
        .flag("ok", lens.len() == n && lens.iter().all(|l| *l == MIB as u64))
}

/// A report of `n` tasks done in `took`: `n`, `seconds`, `tasks_per_s`, `ok`.
pub fn rate_report(n: usize, took: Duration, ok: bool) -> Report {
    Report::new()
        .int("n", n)
        .num("seconds", took.as_secs_f64())
        .num("tasks_per_s", n as f64 / took.as_secs_f64())
        .flag("ok", ok)
}

/// W9's task: sleeps 50 ms and returns `2i`, but task 5 first kills itself with SIGKILL.
pub fn crash_task(i: u64) -> u64 {
    if i == 5 {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
    std::thread::sleep(Duration::from_millis(50));
    2 * i
}

/// W10's task: `2i`, but a task with `i % 10 == 3` dies by a real segfault (an invalid
/// write: std's handler for stack overflows would swallow one raised SIGSEGV).
#[allow(unsafe_code)]
pub fn segfault_task(i: u64) -> u64 {
    if i % 10 == 3 {
        let bad = std::hint::black_box(8usize) as *mut u64;
        // SAFETY: not safe at all, on purpose: the write faults (nothing is mapped at
        // address 8) and the kernel ends this worker with SIGSEGV, which is the workload.
        unsafe { std::ptr::write_volatile(bad, 1) };
    }
    2 * i
}

/// W11's task: `2i`, but a task with `i % 20 == 7` sleeps 30 s (its timeout ends it first).
pub fn hang_task(i: u64) -> u64 {
    if i % 20 == 7 {
        std::thread::sleep(Duration::from_secs(30));
    }
    2 * i
}

/// W12's task: SIGKILLs its own worker.
pub fn kill_self_task(_: u64) {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    std::thread::sleep(Duration::from_secs(10));
}

/// The report of a fault workload: `n` outcomes, `ok_values` right values, `errors`
/// failures, of which `want_errors` were due; `accounted` when every outcome came back
/// and exactly the due ones failed.
pub fn fault_report(n: usize, took: Duration, ok_values: usize, errors: usize, want_errors: usize) -> Report {
    let accounted = ok_values + errors == n && errors == want_errors;
    Report::new()
        .int("n", n)
        .int("ok_values", ok_values)
        .int("errors", errors)
        .flag("accounted", accounted)
        .flag("ok", accounted)
        .num("seconds", took.as_secs_f64())
        .num("tasks_per_s", n as f64 / took.as_secs_f64())
}

/// A task that sleeps 50 ms: run once on every worker to warm a pool, as the Python side does.
pub fn warm_task(_: ()) {
    std::thread::sleep(Duration::from_millis(50));
}

/// Holds its worker until `gate` is set (the outstanding-memory row).
pub fn wait_for(gate: multiproc::Event) {
    let _ = gate.wait();
}

/// A task that does nothing (process start-up rows).
pub fn nothing(_: ()) {}

/// CLOCK_MONOTONIC in nanoseconds: comparable between processes on one machine.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The pids of this process's children, zombies included (read from /proc).
pub fn children() -> Vec<u32> {
    children_of(std::process::id())
}

/// Every process below this one (children, their children, ...).
pub fn descendants() -> Vec<u32> {
    let mut out = children();
    let mut at = 0;
    while at < out.len() {
        let more = children_of(out[at]);
        out.extend(more);
        at += 1;
    }
    out
}

/// The pids of `me`'s children, zombies included (read from /proc).
pub fn children_of(me: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            // "pid (comm) state ppid ...": comm may hold spaces or parentheses.
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(me)
        })
        .collect()
}

/// This process's children once they have had up to `grace` to go away.
pub fn children_left_after(grace: Duration) -> Vec<u32> {
    let deadline = Instant::now() + grace;
    loop {
        let left = children();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// W9's verdict line from what the caller saw.
pub struct CrashRecord {
    pub results_ok: usize,
    pub other_failures: Vec<String>,
    pub task5: String,
    pub new_task: String,
    pub new_task_ok: bool,
    pub left_behind: Vec<u32>,
    pub took: Duration,
}

impl CrashRecord {
    pub fn report(&self) -> Report {
        let names_sigkill = self.task5.contains("SIGKILL") || self.task5.contains("signal 9");
        let pass = self.results_ok == 19
            && self.other_failures.is_empty()
            && names_sigkill
            && self.new_task_ok
            && self.left_behind.is_empty();
        let left: Vec<String> = self.left_behind.iter().map(u32::to_string).collect();
        Report::new()
            .int("results_ok", self.results_ok)
            .text("other_failures", self.other_failures.join("; "))
            .text("task5", self.task5.clone())
            .flag("task5_names_sigkill", names_sigkill)
            .text("new_task", self.new_task.clone())
            .flag("new_task_ok", self.new_task_ok)
            .text("left_behind", left.join(" "))
            .num("seconds", self.took.as_secs_f64())
            .text("verdict", if pass { "pass" } else { "fail" })
    }
}

/// The process start-up row from `n` starts: medians of start (until the call returned)
/// and stop (until the child was reaped), their sum, and the first (cold) start.
pub fn process_start_report(start: &[Duration], stop: &[Duration]) -> Report {
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let median = |v: &[Duration]| {
        let mut s: Vec<f64> = v.iter().map(ms).collect();
        s.sort_by(f64::total_cmp);
        s.get(s.len().saturating_sub(1) / 2).copied().unwrap_or(f64::NAN)
    };
    let totals: Vec<Duration> = start.iter().zip(stop).map(|(a, b)| *a + *b).collect();
    Report::new()
        .int("n", start.len())
        .num("startup_ms", median(start))
        .num("shutdown_ms", median(stop))
        .num("total_ms", median(&totals))
        .num("first_total_ms", totals.first().map(ms).unwrap_or(f64::NAN))
}

/// W13's table size: 512 MiB.
pub const W13_TABLE: usize = 512 << 20;

static W13: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// W13's read-only table, built on first use (in the fork server's template when it is
/// the preload; in each worker otherwise). Every byte is written, so every page is real.
pub fn w13_table() -> &'static [u8] {
    W13.get_or_init(w13_build)
}

/// A fresh copy of W13's table: the bytes 0..251 over and over.
pub fn w13_build() -> Vec<u8> {
    let pattern: Vec<u8> = (0..251u8).collect();
    let mut table = vec![0u8; W13_TABLE];
    for chunk in table.chunks_mut(251) {
        chunk.copy_from_slice(&pattern[..chunk.len()]);
    }
    table
}

/// When W13's preload ended (CLOCK_MONOTONIC, ns; 0 without one): set in the template,
/// so every worker forked from it knows it.
static W13_PRELOADED_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// W13's preload: builds the table in the fork server's template.
pub fn w13_preload() {
    w13_table();
    W13_PRELOADED_NS.store(monotonic_ns(), std::sync::atomic::Ordering::SeqCst);
}

/// W13's task: waits until all the pool's workers hold one (so each task is on a worker
/// of its own), reads the whole table when `read`, waits again so that every reader is
/// counted while all share, and answers (pid, sum of the table's bytes, own PSS and RSS
/// in kB, when the preload ended).
pub fn w13_task((barrier, read): (multiproc::Barrier, bool)) -> W13Answer {
    let _ = barrier.wait();
    let sum = if read { w13_table().chunks(8).map(|c| c.iter().map(|&b| b as u64).sum::<u64>()).sum() } else { 0 };
    let _ = barrier.wait();
    let me = std::process::id();
    (me, sum, pss_kb(me), rss_kb(me), W13_PRELOADED_NS.load(std::sync::atomic::Ordering::SeqCst))
}

/// What a W13 task answers: (pid, sum of the table's bytes, PSS kB, RSS kB, when the
/// preload ended in CLOCK_MONOTONIC ns).
pub type W13Answer = (u32, u64, u64, u64, u64);

/// The sum W13's readers must find: the table's bytes.
pub fn w13_sum() -> u64 {
    let cycle: u64 = (0..251u64).sum();
    let full = (W13_TABLE / 251) as u64;
    full * cycle + (0..(W13_TABLE % 251) as u64).sum::<u64>()
}

/// The proportional set size of process `pid`, in kB (0 when it cannot be read).
pub fn pss_kb(pid: u32) -> u64 {
    smaps_kb(pid, "Pss:")
}

/// The resident set size of process `pid`, in kB (0 when it cannot be read).
pub fn rss_kb(pid: u32) -> u64 {
    smaps_kb(pid, "Rss:")
}

/// One `field` of `/proc/<pid>/smaps_rollup`, in kB.
fn smaps_kb(pid: u32, field: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else { return 0 };
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
