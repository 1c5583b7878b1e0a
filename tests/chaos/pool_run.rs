//! One pool run: a pool of random shape, one submission through one API, faults at
//! random items; then every item must have settled exactly once with the right outcome.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use multiproc::{Chunksize, MapOptions, Pool, StartMethod, TaskError, TaskOptions};

use crate::config::Config;
use crate::faults::{Fault, In, Out, chaos_star, chaos_task, check_outcome};
use crate::rng::Rng;
use crate::tally::Tally;

/// The timeout given to runs with a SIGSTOP: generous, so that no healthy task on a
/// loaded machine reaches it, and short, since each stopped task costs that long.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// The timeout of other runs that have one: never reached by a healthy task.
const LONG_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a callback may take to arrive once its item is known to have settled.
const CALLBACK_PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Map,
    Imap,
    ImapUnordered,
    ApplyAsync,
    Starmap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    CloseJoin,
    Terminate,
    Drop,
}

/// The schedule of one pool run.
#[derive(Debug, Clone)]
pub struct PoolPlan {
    pub api: Api,
    pub processes: usize,
    /// The fault of each item (mostly `None`).
    pub faults: Vec<Fault>,
    pub chunksize: Chunksize,
    pub retries: u32,
    /// Retries (and timeout) given per call rather than to the pool.
    pub per_call: bool,
    pub timeout: Option<Duration>,
    pub max_tasks: Option<u64>,
    pub window: Option<usize>,
    pub shutdown: Shutdown,
    /// Check that `MapResult::wait` returns only after the `then` callback ran.
    pub strict_then: bool,
    pub salt: u64,
    /// Exec'd workers, or workers forked by a fork server (a third of the runs): the
    /// guarantee holds for both.
    pub start_method: StartMethod,
}

impl PoolPlan {
    pub fn new(rng: &mut Rng, cfg: &Config) -> PoolPlan {
        let enabled: Vec<Fault> = Fault::ALL.into_iter().filter(|f| cfg.enabled(f.name())).collect();
        let n = rng.range(1, 32) as usize;
        let mut faults = vec![Fault::None; n];
        let count = if enabled.is_empty() { 0 } else { rng.range(0, 3.min(n as u64)) };
        for _ in 0..count {
            let at = rng.range(0, n as u64 - 1) as usize;
            faults[at] = rng.pick(&enabled);
        }
        // A stopped worker costs its timeout: at most one SIGSTOP per run.
        let mut stops = 0;
        for f in faults.iter_mut().filter(|f| **f == Fault::SigStop) {
            stops += 1;
            if stops > 1 {
                *f = Fault::None;
            }
        }
        let timeout = if stops > 0 { Some(STOP_TIMEOUT) } else { rng.chance(1, 4).then_some(LONG_TIMEOUT) };
        let chunksize = match rng.range(0, 3) {
            0 => Chunksize::Default,
            1 => Chunksize::Adaptive,
            _ => Chunksize::Fixed(rng.range(1, 6) as usize),
        };
        PoolPlan {
            api: rng.pick(&[Api::Map, Api::Imap, Api::ImapUnordered, Api::ApplyAsync, Api::Starmap]),
            processes: rng.range(1, 3) as usize,
            faults,
            chunksize,
            retries: rng.range(0, 2) as u32,
            per_call: rng.chance(1, 2),
            timeout,
            max_tasks: rng.chance(1, 5).then(|| rng.range(1, 6)),
            window: rng.chance(1, 3).then(|| rng.range(1, 8) as usize),
            shutdown: rng.pick(&[Shutdown::CloseJoin, Shutdown::CloseJoin, Shutdown::Terminate, Shutdown::Drop]),
            strict_then: cfg.checks("then_after_wait"),
            salt: rng.range(0, 1000),
            // Drawn last, so that a seed's other draws stay what they were before it.
            start_method: if rng.chance(1, 3) { StartMethod::ForkServer } else { StartMethod::Exec },
        }
    }

    /// The faults only, by item: what a failure message needs.
    pub fn describe(&self) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .enumerate()
            .filter(|(_, f)| **f != Fault::None)
            .map(|(i, f)| format!("{i}:{}", f.name()))
            .collect();
        format!(
            "pool run: api {:?}, {} items, faults [{}], processes {}, chunksize {:?}, retries {} ({}), timeout {:?}, max_tasks {:?}, window {:?}, shutdown {:?}, salt {}, start {:?}",
            self.api,
            self.faults.len(),
            faults.join(", "),
            self.processes,
            self.chunksize,
            self.retries,
            if self.per_call { "per call" } else { "pool default" },
            self.timeout,
            self.max_tasks,
            self.window,
            self.shutdown,
            self.salt,
            self.start_method
        )
    }

    fn args(&self) -> Vec<In> {
        self.faults.iter().enumerate().map(|(i, &fault)| In { index: i as u64, fault }).collect()
    }

    fn salt_of(&self) -> u64 {
        if self.api == Api::Starmap { self.salt } else { 0 }
    }

    fn map_options(&self) -> MapOptions {
        let mut o = MapOptions::new().chunksize(self.chunksize);
        if self.per_call {
            o = o.retries(self.retries);
            if let Some(t) = self.timeout {
                o = o.timeout(t);
            }
        }
        if let Some(w) = self.window {
            o = o.window(w);
        }
        o
    }

    fn build_pool(&self) -> Pool {
        let mut b = Pool::builder()
            .processes(self.processes)
            .max_frame_size(crate::faults::CHAOS_MAX_FRAME)
            .start_method(self.start_method);
        if !self.per_call {
            b = b.retries(self.retries);
            if let Some(t) = self.timeout {
                b = b.timeout(t);
            }
        }
        if let Some(m) = self.max_tasks {
            b = b.max_tasks_per_child(m);
        }
        b.build().expect("the pool starts")
    }
}

/// Runs `plan`; returns its tally and the pids of every worker it saw.
pub fn run(plan: &PoolPlan) -> (Tally, Vec<u32>) {
    let mut tally = Tally { runs: 1, items: plan.faults.len() as u64, ..Tally::default() };
    tally.faults = plan.faults.iter().filter(|f| **f != Fault::None).count() as u64;
    let pool = plan.build_pool();
    let mut pids = pool.stats().worker_pids;
    let results = match plan.api {
        Api::Map | Api::Starmap => run_map(plan, &pool, &mut tally),
        Api::Imap => run_imap(plan, &pool, &mut tally),
        Api::ImapUnordered => run_imap_unordered(plan, &pool, &mut tally),
        Api::ApplyAsync => run_apply_async(plan, &pool, &mut tally),
    };
    for r in &results {
        match r {
            Err(TaskError::WorkerDied { attempts, .. }) => pids.extend(attempts.iter().map(|a| a.pid)),
            Err(TaskError::Timeout { pid, .. }) => pids.push(*pid),
            _ => {}
        }
    }
    check_stats(&pool, &results, &mut tally);
    pids.extend(pool.stats().worker_pids);
    shut_down(plan, pool, &mut tally);
    (tally, pids)
}

fn shut_down(plan: &PoolPlan, pool: Pool, tally: &mut Tally) {
    match plan.shutdown {
        Shutdown::CloseJoin => {
            pool.close();
            if let Err(e) = pool.join() {
                tally.wrong(format!("join failed: {e}"));
            }
        }
        Shutdown::Terminate => pool.terminate(),
        Shutdown::Drop => {}
    }
    drop(pool);
}

/// The pool's counters agree with what the caller saw.
fn check_stats(pool: &Pool, results: &[Result<Out, TaskError>], tally: &mut Tally) {
    let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
    let failed = results.len() as u64 - ok;
    let s = pool.stats();
    if s.tasks_done != ok || s.tasks_failed() != failed {
        tally.wrong(format!(
            "stats say {} done and {} failed; the caller got {ok} and {failed}: {s:?}",
            s.tasks_done,
            s.tasks_failed()
        ));
    }
}

/// Checks results given in input order, one per item.
fn check_in_order(plan: &PoolPlan, results: &[Result<Out, TaskError>], tally: &mut Tally) {
    if results.len() != plan.faults.len() {
        tally.lost(format!("{} outcomes for {} items", results.len(), plan.faults.len()));
    }
    for (i, (r, &fault)) in results.iter().zip(&plan.faults).enumerate() {
        if let Err(why) = check_outcome(i as u64, fault, plan.salt_of(), plan.retries, r) {
            tally.wrong(why);
        }
    }
}

fn run_map(plan: &PoolPlan, pool: &Pool, tally: &mut Tally) -> Vec<Result<Out, TaskError>> {
    let opts = plan.map_options();
    let (tx, rx) = mpsc::channel::<Result<usize, TaskError>>();
    let tx2 = tx.clone();
    let m = if plan.api == Api::Starmap {
        let args: Vec<(In, u64)> = plan.args().into_iter().map(|a| (a, plan.salt)).collect();
        pool.starmap_async_with(chaos_star, args, &opts)
    } else {
        pool.map_async_with(chaos_task, plan.args(), &opts)
    };
    let m = m.then(move |v: &[Out]| tx.send(Ok(v.len())).unwrap(), move |e| tx2.send(Err(e.clone())).unwrap());
    m.wait();
    let early = rx.try_recv().ok();
    if plan.strict_then && early.is_none() {
        tally.wrong("then_after_wait: MapResult::wait returned before the then callback ran".into());
    }
    let results = m.get_all();
    check_in_order(plan, &results, tally);
    let called = early.or_else(|| rx.recv_timeout(CALLBACK_PATIENCE).ok());
    let first_error = results.iter().find_map(|r| r.as_ref().err().cloned());
    match (called, first_error) {
        (None, _) => tally.lost("the map's then callback never ran".into()),
        (Some(Ok(n)), None) if n == results.len() => {}
        (Some(Err(got)), Some(want)) if got == want => {}
        (Some(got), want) => tally.wrong(format!("then gave {got:?}; the first error is {want:?}")),
    }
    results
}

fn run_imap(plan: &PoolPlan, pool: &Pool, tally: &mut Tally) -> Vec<Result<Out, TaskError>> {
    let opts = plan.map_options();
    let mut it = pool.imap_with(chaos_task, plan.args(), &opts);
    let results: Vec<_> = it.by_ref().collect();
    if let Some(extra) = it.next() {
        tally.lost(format!("imap gave an outcome after its end: {extra:?}"));
    }
    check_in_order(plan, &results, tally);
    results
}

fn run_imap_unordered(plan: &PoolPlan, pool: &Pool, tally: &mut Tally) -> Vec<Result<Out, TaskError>> {
    let opts = plan.map_options();
    let results: Vec<_> = pool.imap_unordered_with(chaos_task, plan.args(), &opts).collect();
    if results.len() != plan.faults.len() {
        tally.lost(format!("{} outcomes for {} items", results.len(), plan.faults.len()));
    }
    // Values name their item; an error is matched to an unmatched item it is right for.
    let mut matched = vec![false; plan.faults.len()];
    for r in &results {
        let claim = |i: usize| !matched[i] && check_outcome(i as u64, plan.faults[i], 0, plan.retries, r).is_ok();
        let at = match r {
            Ok(out) => Some(out.index as usize).filter(|&i| i < matched.len() && claim(i)),
            Err(_) => (0..matched.len()).find(|&i| claim(i)),
        };
        match at {
            Some(i) => matched[i] = true,
            None => tally.wrong(format!("an outcome no item accounts for: {r:?}")),
        }
    }
    for (i, m) in matched.iter().enumerate() {
        if !m {
            tally.lost(format!("item {i} ({}) never settled correctly", plan.faults[i].name()));
        }
    }
    results
}

fn run_apply_async(plan: &PoolPlan, pool: &Pool, tally: &mut Tally) -> Vec<Result<Out, TaskError>> {
    let n = plan.faults.len();
    let calls: Arc<Vec<AtomicU32>> = Arc::new((0..n).map(|_| AtomicU32::new(0)).collect());
    let handles: Vec<_> = plan
        .args()
        .into_iter()
        .map(|arg| {
            let (ok, err) = (calls.clone(), calls.clone());
            let i = arg.index as usize;
            let mut o = TaskOptions::new()
                .callback(move |_: &Out| {
                    ok[i].fetch_add(1, Ordering::SeqCst);
                })
                .error_callback(move |_| {
                    err[i].fetch_add(1, Ordering::SeqCst);
                });
            if plan.per_call {
                o = o.retries(plan.retries);
                if let Some(t) = plan.timeout {
                    o = o.timeout(t);
                }
            }
            pool.apply_async_with(chaos_task, arg, o)
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for (i, h) in handles.into_iter().enumerate() {
        results.push(h.get());
        // Callbacks run before the result counts as ready.
        let c = calls[i].load(Ordering::SeqCst);
        if c != 1 {
            tally.lost(format!("item {i}: its callback ran {c} times by the time get returned"));
        }
    }
    check_in_order(plan, &results, tally);
    results
}
