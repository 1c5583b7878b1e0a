//! The cluster's chaos suite: seeded random runs of a cluster pool, each with a random
//! shape (`map`, `imap`, `imap_unordered`, `apply_async` with callbacks), random faults in
//! its tasks (a panic, an abort, an `exit`, a hang past its time limit, an argument and a
//! result too large for a message, which go through the object store) and one random
//! fault from outside at a random point (a worker SIGKILLed, a worker frozen past the ack
//! wait, the broker restarted), on one broker with one to three worker processes.
//!
//! After every run:
//! - every item settled exactly once, with its value or the error its own fault names
//!   (the outside fault costs no item anything: the broker redelivers what a dead or
//!   frozen worker held, and a late duplicate never reaches the caller);
//! - callbacks ran once per item, and the pool's counters and the client's agree;
//! - the broker holds nothing of the run (no task unacked, no result untaken, no object);
//! - once the workers are killed, no process that ran a task is left, and the test
//!   process has no child left and no more descriptors than after its first run.
//!
//! The session prints its seed. Environment:
//! - `MULTIPROC_CLUSTER_CHAOS_SEED=N` replays a session; `MULTIPROC_CLUSTER_CHAOS_ONLY_RUN=k`
//!   only its run `k`; `MULTIPROC_CLUSTER_CHAOS_OUTSIDE=kill-worker` (or `freeze-worker`,
//!   `restart-broker`, `nothing`) gives every run that fault from outside;
//! - `MULTIPROC_CLUSTER_CHAOS_RUNS=N` (default 6) and `MULTIPROC_CLUSTER_CHAOS_SECONDS=S`
//!   (default: no limit) bound it; a longer soak sets both.
//! - A run that takes longer than 180 s is a hang: the test aborts, naming the seed.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::{Chunksize, MapOptions, Pool, TaskError, TaskOptions};
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, ClusterPool};
use rustix::process::{Pid, Signal, kill_process};
use serde::{Deserialize, Serialize};

mod common;

multiproc_nats::test_init!();

/// Short, so that what a dead or frozen worker held comes back quickly.
const ACK_WAIT: Duration = Duration::from_secs(1);
/// A run that takes longer hangs.
const RUN_LIMIT: Duration = Duration::from_secs(180);
/// The time limit of the runs that have hanging tasks.
const HANG_LIMIT: Duration = Duration::from_millis(1500);
const SIGABRT: i32 = Signal::ABORT.as_raw();

/// xorshift64*: the session's only source of chance, so a seed replays it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True `k` times in `n`.
    fn chance(&mut self, k: u64, n: u64) -> bool {
        self.next() % n < k
    }
}

/// What an item does besides returning its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum ItemFault {
    None,
    Panic,
    Abort,
    Exit,
    Hang,
    /// Its argument and its result are over the broker's message limit (1 MiB): they
    /// travel through the pool's object store.
    Large,
}

/// The size of a large item's argument and result.
const LARGE: usize = 1536 * 1024;

/// The fault from outside, injected once `after` tasks have started.
#[derive(Clone, Copy, Debug)]
enum Outside {
    Nothing,
    KillWorker,
    FreezeWorker,
    RestartBroker,
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Map,
    Imap,
    ImapUnordered,
    ApplyAsync,
}

#[derive(Debug)]
struct Plan {
    workers: usize,
    slots: usize,
    shape: Shape,
    chunk: Option<usize>,
    timeout: Option<Duration>,
    faults: Vec<ItemFault>,
    outside: Outside,
    after: u32,
}

impl Plan {
    fn new(rng: &mut Rng, only_outside: Option<Outside>) -> Plan {
        let n = rng.range(8, 60) as usize;
        let timeout = rng.chance(1, 3).then_some(HANG_LIMIT);
        let faults = (0..n).map(|_| item_fault(rng, timeout.is_some())).collect();
        let shape = [Shape::Map, Shape::Imap, Shape::ImapUnordered, Shape::ApplyAsync][rng.range(0, 3) as usize];
        let outside = [Outside::Nothing, Outside::KillWorker, Outside::FreezeWorker, Outside::RestartBroker]
            [rng.range(0, 3) as usize];
        Plan {
            workers: rng.range(1, 3) as usize,
            slots: rng.range(1, 2) as usize,
            shape,
            chunk: rng.chance(1, 2).then(|| rng.range(1, 5) as usize),
            timeout,
            faults,
            outside: only_outside.unwrap_or(outside),
            after: rng.range(0, n as u64 / 2) as u32,
        }
    }
}

fn item_fault(rng: &mut Rng, may_hang: bool) -> ItemFault {
    if !rng.chance(1, 5) {
        return ItemFault::None;
    }
    match rng.range(0, if may_hang { 4 } else { 3 }) {
        0 => ItemFault::Panic,
        1 => ItemFault::Abort,
        2 => ItemFault::Exit,
        3 => ItemFault::Large,
        _ => ItemFault::Hang,
    }
}

/// The task: says it started (a connection to the run's socket: a task's argument cannot
/// carry a descriptor to another machine), does its fault, returns its square and the pid
/// of the process it ran in.
fn chaos_task((i, fault, started, payload): Item) -> Value {
    let _ = std::os::unix::net::UnixStream::connect(&started);
    match fault {
        ItemFault::None => {}
        ItemFault::Large => return (i * i, std::process::id(), payload),
        ItemFault::Panic => panic!("chaos panic {i}"),
        ItemFault::Abort => std::process::abort(),
        ItemFault::Exit => std::process::exit(3),
        ItemFault::Hang => std::thread::sleep(Duration::from_secs(3600)),
    }
    (i * i, std::process::id(), Vec::new())
}

/// An item: its index, its fault, the socket where it says it started, its payload.
type Item = (u64, ItemFault, String, Vec<u8>);
/// A result: the item's square, the pid of the process that ran it, its payload back.
type Value = (u64, u32, Vec<u8>);

fn payload(i: u64, fault: ItemFault) -> Vec<u8> {
    if fault == ItemFault::Large { common::pseudo_random_bytes(i, LARGE) } else { Vec::new() }
}

/// Counts the tasks that started (each connects once; a task run again connects again).
struct Starts {
    path: std::path::PathBuf,
    count: Mutex<u32>,
    arrived: std::sync::Condvar,
    over: std::sync::atomic::AtomicBool,
    counter: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Starts {
    fn open(tag: &str) -> Arc<Starts> {
        let path = std::env::temp_dir().join(format!("mpn-chaos-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let starts = Arc::new(Starts {
            path,
            count: Mutex::new(0),
            arrived: std::sync::Condvar::new(),
            over: std::sync::atomic::AtomicBool::new(false),
            counter: Mutex::new(None),
        });
        let counting = starts.clone();
        *starts.counter.lock().unwrap() = Some(std::thread::spawn(move || {
            for _ in listener.incoming() {
                if counting.over.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                *counting.count.lock().unwrap() += 1;
                counting.arrived.notify_all();
            }
        }));
        starts
    }

    /// Waits until `n` tasks have started; false if they did not within the run's limit.
    fn wait_for(&self, n: u32) -> bool {
        let count = self.count.lock().unwrap();
        let (count, _) = self.arrived.wait_timeout_while(count, RUN_LIMIT, |c| *c < n).unwrap();
        *count >= n
    }

    /// Ends the counting thread (one last connection wakes it) and closes the socket.
    fn close(&self) {
        self.over.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        if let Some(counter) = self.counter.lock().unwrap().take() {
            counter.join().expect("the counting thread does not panic");
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What item `i` must settle as, given its fault.
fn check_outcome(i: u64, fault: ItemFault, outcome: &Result<Value, TaskError>) -> Result<(), String> {
    let ok = match (fault, outcome) {
        (ItemFault::None | ItemFault::Large, Ok((v, _, back))) => *v == i * i && *back == payload(i, fault),
        (ItemFault::Panic, Err(TaskError::Panicked { message, .. })) => *message == format!("chaos panic {i}"),
        (ItemFault::Abort, Err(TaskError::WorkerDied { signal, .. })) => *signal == Some(SIGABRT),
        (ItemFault::Exit, Err(TaskError::WorkerDied { exit_code, .. })) => *exit_code == Some(3),
        (ItemFault::Hang, Err(TaskError::Timeout { .. })) => true,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let shown = outcome.as_ref().map(|(v, pid, back)| (v, pid, back.len()));
    Err(format!("item {i} ({fault:?}) settled as {shown:?} (value, pid, payload length)"))
}

/// What the run shares with the thread that injects the outside fault.
struct Cluster {
    server: Mutex<NatsServer>,
    workers: Mutex<Vec<common::Worker>>,
    /// This run's pool (each run has its own, so that nothing of one run counts in the next).
    pool: String,
    slots: usize,
}

impl Cluster {
    fn start_worker(&self) {
        let w = common::start_worker(&self.server.lock().unwrap(), &self.pool, self.slots, ACK_WAIT);
        self.workers.lock().unwrap().push(w);
    }

    /// Injects `outside` once `after` tasks have started (or never, if they do not).
    fn inject(&self, outside: Outside, started: &Starts, after: u32, pick: usize) {
        if !started.wait_for(after) {
            return;
        }
        match outside {
            Outside::Nothing => {}
            Outside::KillWorker => {
                let w = {
                    let mut ws = self.workers.lock().unwrap();
                    let at = pick % ws.len();
                    ws.remove(at)
                };
                w.kill();
                if self.workers.lock().unwrap().is_empty() {
                    self.start_worker();
                }
            }
            Outside::FreezeWorker => {
                let pid = {
                    let ws = self.workers.lock().unwrap();
                    ws[pick % ws.len()].pid() as i32
                };
                // The fault's length, not a wait for something: frozen past the ack wait.
                signal(pid, Signal::STOP);
                std::thread::sleep(2 * ACK_WAIT);
                signal(pid, Signal::CONT);
            }
            Outside::RestartBroker => self.server.lock().unwrap().restart(),
        }
    }
}

/// Signals a worker this test started and has not reaped (it is reaped at the run's end).
fn signal(pid: i32, sig: Signal) {
    let pid = Pid::from_raw(pid).expect("a worker's pid is positive");
    kill_process(pid, sig).expect("the worker is there to signal");
}

/// Submits the run's items in its shape and gathers each item's outcome by index;
/// `Err` names an item that settled twice or never.
fn run_shape(pool: &Pool, plan: &Plan, started: &Starts, calls: &Arc<Mutex<Vec<u32>>>) -> Outcomes {
    let path = started.path.display().to_string();
    let items: Vec<Item> =
        plan.faults.iter().enumerate().map(|(i, f)| (i as u64, *f, path.clone(), payload(i as u64, *f))).collect();
    let mut opts = MapOptions::new();
    if let Some(k) = plan.chunk {
        opts = opts.chunksize(Chunksize::Fixed(k));
    }
    if let Some(t) = plan.timeout {
        opts = opts.timeout(t);
    }
    match plan.shape {
        Shape::Map => pool.map_async_with(chaos_task, items, &opts).get_all(),
        Shape::Imap => pool.imap_with(chaos_task, items, &opts).collect(),
        Shape::ImapUnordered => pool.imap_unordered_with(chaos_task, items, &opts).collect(),
        Shape::ApplyAsync => apply_all(pool, plan, items, calls),
    }
}

type Outcomes = Vec<Result<Value, TaskError>>;

fn apply_all(pool: &Pool, plan: &Plan, items: Vec<Item>, calls: &Arc<Mutex<Vec<u32>>>) -> Outcomes {
    let handles: Vec<_> = items
        .into_iter()
        .map(|item| {
            let (ok, err) = (calls.clone(), calls.clone());
            let i = item.0 as u32;
            let mut opts = TaskOptions::new()
                .callback(move |_: &Value| ok.lock().unwrap().push(i))
                .error_callback(move |_| err.lock().unwrap().push(i));
            if let Some(t) = plan.timeout {
                opts = opts.timeout(t);
            }
            pool.apply_async_with(chaos_task, item, opts)
        })
        .collect();
    handles.into_iter().map(|h| h.get_timeout(RUN_LIMIT)).collect()
}

/// Each item settled once, as its fault says: by index for the ordered shapes; for
/// `imap_unordered`, a value names its item by its square and a panic by its message,
/// and the other errors are counted by kind.
fn check_outcomes(plan: &Plan, outcomes: &Outcomes) -> Result<(), String> {
    if outcomes.len() != plan.faults.len() {
        return Err(format!("{} outcomes for {} items", outcomes.len(), plan.faults.len()));
    }
    if !matches!(plan.shape, Shape::ImapUnordered) {
        return plan.faults.iter().zip(outcomes).enumerate().try_for_each(|(i, (f, o))| check_outcome(i as u64, *f, o));
    }
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for o in outcomes {
        let key = match o {
            Ok((v, _, back)) => {
                let i = (*v as f64).sqrt() as u64;
                let fault = if back.is_empty() { ItemFault::None } else { ItemFault::Large };
                if *back != payload(i, fault) {
                    return Err(format!("item {i} came back with a wrong payload of {} bytes", back.len()));
                }
                format!("value of {i}")
            }
            Err(TaskError::Panicked { message, .. }) => message.clone(),
            Err(TaskError::WorkerDied { signal: Some(SIGABRT), .. }) => "an abort".into(),
            Err(TaskError::WorkerDied { exit_code: Some(3), .. }) => "an exit".into(),
            Err(TaskError::Timeout { .. }) => "a timeout".into(),
            Err(e) => return Err(format!("an outcome no item should have: {e:?}")),
        };
        *got.entry(key).or_default() += 1;
    }
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for (i, f) in plan.faults.iter().enumerate() {
        let key = match f {
            ItemFault::None | ItemFault::Large => format!("value of {i}"),
            ItemFault::Panic => format!("chaos panic {i}"),
            ItemFault::Abort => "an abort".into(),
            ItemFault::Exit => "an exit".into(),
            ItemFault::Hang => "a timeout".into(),
        };
        *want.entry(key).or_default() += 1;
    }
    if got == want { Ok(()) } else { Err(format!("outcomes {got:?}, expected {want:?}")) }
}

/// Callbacks (the `apply_async` shape) ran once per item; the pool's counters and the
/// client's count each item once.
fn check_counts(pool: &Pool, plan: &Plan, calls: &Mutex<Vec<u32>>) -> Result<(), String> {
    let n = plan.faults.len();
    if matches!(plan.shape, Shape::ApplyAsync) {
        let mut calls = calls.lock().unwrap().clone();
        calls.sort_unstable();
        if calls != (0..n as u32).collect::<Vec<_>>() {
            return Err(format!("callbacks ran for {calls:?}, not once for each of {n} items"));
        }
    }
    let stats = pool.stats();
    if stats.tasks_done + stats.tasks_failed() != n as u64 {
        return Err(format!(
            "the pool counted {} done and {} failed of {n} items",
            stats.tasks_done,
            stats.tasks_failed()
        ));
    }
    let client = ClusterPool::client_stats(pool).ok_or("no client stats")?;
    if client.submitted != client.finished || client.lost != 0 {
        return Err(format!("the client's counts disagree: {client:?}"));
    }
    Ok(())
}

/// Waits until the broker holds nothing of the run: no task on the queue, no result
/// untaken, no object.
fn check_broker_clean(server: &NatsServer, pool: &str) -> Result<(), String> {
    let broker = BrokerConfig::parse(&server.url()).unwrap();
    let queue = common::queue(pool, ACK_WAIT);
    let since = Instant::now();
    loop {
        let s = multiproc_nats::status(&broker, &queue).map_err(|e| format!("status: {e}"))?;
        if s.tasks == 0 && s.results_waiting == 0 && s.objects == 0 {
            return Ok(());
        }
        if since.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "the broker still holds {} tasks, {} results, {} objects; the task queue: {}",
                s.tasks,
                s.results_waiting,
                s.objects,
                task_queue_state(server, pool)
            ));
        }
        // The broker has nothing to wait on: its state is asked again.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the task stream and its consumer hold, for a failure's message.
fn task_queue_state(server: &NatsServer, pool: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
        let mut stream = js.get_stream(format!("MPROC_{pool}")).await.unwrap();
        let info = stream.info().await.unwrap().state.clone();
        let mut out = format!("stream {info:?}; ");
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(&common::consumer()).await.unwrap();
        let c = consumer.info().await.unwrap();
        out += &format!(
            "consumer: delivered {:?}, ack floor {:?}, ack pending {}, redelivered {}, pending {}; ",
            c.delivered, c.ack_floor, c.num_ack_pending, c.num_redelivered, c.num_pending
        );
        for seq in info.first_sequence..=info.last_sequence {
            if let Ok(m) = stream.get_raw_message(seq).await {
                out += &format!("message {seq}: {} ({} bytes, headers {:?}); ", m.subject, m.payload.len(), m.headers);
            }
        }
        out
    })
}

/// Waits until none of `pids` (processes that ran tasks) is a pool process any more.
fn check_task_processes_gone(pids: &[u32]) -> Result<(), String> {
    let since = Instant::now();
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| is_pool_process(*p)).collect();
        if left.is_empty() {
            return Ok(());
        }
        if since.elapsed() > Duration::from_secs(60) {
            return Err(format!("processes that ran tasks outlived their workers: {left:?}"));
        }
        // Their ends are the kernel's to tell; there is nothing to wait on from here.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is (still) a multiproc pool process (a reused pid is some other program).
fn is_pool_process(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "multiproc-pool")
}

/// What this process has open: each descriptor and what it points at.
fn open_descriptors() -> Vec<String> {
    let fds = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd is readable");
    fds.filter_map(Result::ok)
        .map(|e| {
            format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                std::fs::read_link(e.path()).unwrap_or_default().display()
            )
        })
        .collect()
}

/// One run: its workers and pool, the injector, the outcomes, the checks, the cleanup.
fn one_run(server: NatsServer, plan: &Plan, pool_name: String, pick: usize) -> (NatsServer, Result<(), String>) {
    let cluster = Arc::new(Cluster {
        server: Mutex::new(server),
        workers: Mutex::new(Vec::new()),
        pool: pool_name,
        slots: plan.slots,
    });
    for _ in 0..plan.workers {
        cluster.start_worker();
    }
    let pool =
        common::cluster_pool(&cluster.server.lock().unwrap(), &cluster.pool, ACK_WAIT, plan.workers * plan.slots);
    let started = Starts::open(&cluster.pool);
    let calls = Arc::new(Mutex::new(Vec::new()));
    let injector = {
        let (cluster, started, outside, after) = (cluster.clone(), started.clone(), plan.outside, plan.after);
        std::thread::spawn(move || cluster.inject(outside, &started, after, pick))
    };
    let outcomes = run_shape(&pool, plan, &started, &calls);
    injector.join().expect("the injector does not panic");
    started.close();
    let mut verdict = check_outcomes(plan, &outcomes).and_then(|()| check_counts(&pool, plan, &calls));
    if verdict.is_ok() {
        verdict = check_broker_clean(&cluster.server.lock().unwrap(), &cluster.pool);
    }
    pool.close();
    let joined = pool.join();
    for w in cluster.workers.lock().unwrap().drain(..) {
        w.kill();
    }
    let pids: Vec<u32> = outcomes.iter().filter_map(|o| o.as_ref().ok().map(|(_, pid, _)| *pid)).collect();
    verdict = verdict.and(joined.map_err(|e| format!("join: {e}"))).and_then(|()| check_task_processes_gone(&pids));
    if verdict.is_ok() && !multiproc::active_children().is_empty() {
        verdict = Err(format!("children left: {:?}", multiproc::active_children()));
    }
    let cluster = Arc::try_unwrap(cluster).ok().expect("the injector is done");
    (cluster.server.into_inner().unwrap(), verdict)
}

/// Waits until this process has no more than `limit` descriptors open: a closed pool's
/// connection ends on the client's runtime, a moment after `join` returns.
fn descriptors_settle_within(limit: usize) -> Result<(), Vec<String>> {
    let since = Instant::now();
    loop {
        let fds = open_descriptors();
        if fds.len() <= limit {
            return Ok(());
        }
        if since.elapsed() > Duration::from_secs(20) {
            return Err(fds);
        }
        // The runtime's teardown has nothing to wait on from here.
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// Aborts the test, naming the seed, if a run outlives [`RUN_LIMIT`].
fn watchdog(seed: u64) -> mpsc::Sender<Option<usize>> {
    let (tx, rx) = mpsc::channel::<Option<usize>>();
    std::thread::spawn(move || {
        let mut run = None;
        loop {
            match rx.recv_timeout(RUN_LIMIT) {
                Ok(r) => run = r,
                Err(mpsc::RecvTimeoutError::Timeout) if run.is_some() => {
                    eprintln!("cluster chaos: run {run:?} of seed {seed} hangs; aborting");
                    std::process::abort();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    });
    tx
}

#[test]
fn every_item_settles_once_and_nothing_is_left_whatever_breaks() {
    let Some(mut server) = NatsServer::start("cluster-chaos") else { return };
    let seed = env_number("MULTIPROC_CLUSTER_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let runs = env_number("MULTIPROC_CLUSTER_CHAOS_RUNS").unwrap_or(6);
    let only = env_number("MULTIPROC_CLUSTER_CHAOS_ONLY_RUN").map(|k| k as usize);
    let only_outside = std::env::var("MULTIPROC_CLUSTER_CHAOS_OUTSIDE").ok().map(|v| match v.as_str() {
        "nothing" => Outside::Nothing,
        "kill-worker" => Outside::KillWorker,
        "freeze-worker" => Outside::FreezeWorker,
        "restart-broker" => Outside::RestartBroker,
        _ => panic!(
            "MULTIPROC_CLUSTER_CHAOS_OUTSIDE={v}: not one of nothing, kill-worker, freeze-worker, restart-broker"
        ),
    });
    let seconds = env_number("MULTIPROC_CLUSTER_CHAOS_SECONDS").map(Duration::from_secs);
    eprintln!("cluster chaos: seed {seed} (MULTIPROC_CLUSTER_CHAOS_SEED={seed} replays it)");
    let mut rng = Rng(seed | 1);
    let dog = watchdog(seed);
    let (since, mut fds_after_first) = (Instant::now(), None);
    for k in 0..runs as usize {
        if seconds.is_some_and(|s| since.elapsed() > s) {
            break;
        }
        let plan = Plan::new(&mut rng, only_outside);
        let pick = rng.next() as usize;
        if only.is_some_and(|o| o != k) {
            continue;
        }
        eprintln!("cluster chaos: run {k}: {plan:?}");
        dog.send(Some(k)).unwrap();
        let began = Instant::now();
        let (back, verdict) = one_run(server, &plan, format!("chaos{k}"), pick);
        server = back;
        eprintln!("cluster chaos: run {k} ended in {:.1} s", began.elapsed().as_secs_f64());
        dog.send(None).unwrap();
        if let Err(why) = verdict {
            panic!("cluster chaos: run {k} of seed {seed} ({plan:?}): {why}");
        }
        let first = fds_after_first.get_or_insert_with(open_descriptors);
        if let Err(fds) = descriptors_settle_within(first.len()) {
            panic!("cluster chaos: run {k} of seed {seed}: descriptors left: open now {fds:?}, after run 0 {first:?}");
        }
    }
}
