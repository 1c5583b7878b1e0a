//! A walk through every capability of multiproc, in about a second.
//!
//! Run with `cargo run --release --example tour` (add `--features sandbox` for the
//! sandboxed pool). What it prints does not depend on the machine's speed (only pids,
//! names and ports change between runs). Children that crash on purpose keep their panic
//! messages off the terminal, so stderr stays empty.
//!
//! The cluster part runs against a NATS broker when `MULTIPROC_NATS_URL` names one that
//! answers and the `cluster` example of `multiproc-nats` is built beside this one
//! (`cargo build --release -p multiproc-nats --example cluster`); otherwise it says how.

use std::time::Instant;

use multiproc::manager::DictProxy;
use multiproc::{
    Connection, Lock, LockError, Manager, ManagerError, Pipe, Process, Queue, ShareableItem, ShareableList,
    SharedMemory, SharedMemoryManager, Value, current_process, parent_process,
};

fn main() -> Result<(), multiproc::Error> {
    // First line of main: a child becomes its job here and never returns.
    multiproc::init();
    let start = Instant::now();
    processes()?;
    pool().map_err(|e| multiproc::Error::Io(std::io::Error::other(e.to_string())))?;
    accounting().map_err(|e| multiproc::Error::Io(std::io::Error::other(e.to_string())))?;
    timeouts_retries_progress().map_err(|e| multiproc::Error::Io(std::io::Error::other(e.to_string())))?;
    sandbox().map_err(|e| multiproc::Error::Io(std::io::Error::other(e.to_string())))?;
    fork_server().map_err(|e| multiproc::Error::Io(std::io::Error::other(e.to_string())))?;
    async_part().map_err(|e| multiproc::Error::Io(std::io::Error::other(e.to_string())))?;
    ipc();
    managers();
    cluster();
    println!("\ntour finished in {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn section(title: &str) {
    println!("\n== {title} ==");
}

fn hello(n: u32) {
    let me = current_process();
    let parent = parent_process().expect("a child knows its parent");
    println!("  {} (pid {}) says hello #{n} to {} (pid {})", me.name(), me.pid(), parent.name(), parent.pid());
}

fn crash(how: String) {
    match how.as_str() {
        "panic" => {
            // Without this hook the message goes to the child's stderr, as Python prints a
            // child's traceback; the tour keeps it out of its narrative.
            std::panic::set_hook(Box::new(|_| {}));
            panic!("a bug in the child")
        }
        _ => std::process::exit(3),
    }
}

fn sleep_forever(_: ()) {
    std::thread::sleep(std::time::Duration::from_secs(3600));
}

/// Processes: start, join, names, exit codes the way Python reports them.
fn processes() -> Result<(), multiproc::Error> {
    section("Process: real OS processes running Rust functions");
    let mut p = Process::new(hello, 1).name("greeter");
    println!("  before start: pid {:?}", p.pid());
    p.start()?;
    p.join()?;
    println!("  {} exited with {:?}", p.get_name(), p.exitcode());

    let mut panicking = Process::new(crash, "panic".to_string());
    panicking.start()?;
    panicking.join()?;
    println!("  a panicking child exits with {:?}", panicking.exitcode());

    let mut sleeper = Process::new(sleep_forever, ());
    sleeper.start()?;
    sleeper.kill()?;
    sleeper.join()?;
    println!("  a SIGKILLed child reports {:?}, as Python's exitcode does", sleeper.exitcode());
    println!("  this machine offers {} CPUs to this process", multiproc::cpu_count());
    Ok(())
}

fn squarer((conn, results, counter): (Connection<u64>, Queue<u64>, Value<u64>)) {
    while let Ok(n) = conn.recv() {
        results.put(n * n).expect("put");
        *counter.lock().expect("lock") += 1;
    }
}

/// Attaches the list `name` and fills it in; a string longer than its slot is refused.
fn finish_list(name: String) {
    let mut list = ShareableList::attach(&name).expect("attach");
    list.set(0, "final").expect("fits");
    list.set(1, 42).expect("fits");
    let refused = list.set(2, "more than eight bytes").is_err();
    list.set(2, refused).expect("fits");
}

fn die_holding(lock: Lock) {
    let _held = lock.acquire().expect("lock");
    std::process::abort();
}

/// IPC: a pipe in, a queue out, a shared counter, a shared-memory segment, and a lock
/// recovered from a process that died holding it — all handles passed as arguments.
fn ipc() {
    section("Queue, Pipe, Value, SharedMemory, ShareableList, Lock: handles that travel to children");
    let long = std::time::Duration::from_secs(10);
    let (mine, theirs) = Pipe::duplex().expect("pipe");
    let results = Queue::new().expect("queue");
    let counter = Value::new(0u64).expect("value");
    let mut child = Process::new(squarer, (theirs, results.clone(), counter.clone()));
    child.start().expect("start");
    for n in 1..=5 {
        mine.send(n).expect("send");
    }
    let squares: Vec<u64> = (0..5).map(|_| results.get_timeout(long).expect("get")).collect();
    drop(mine); // the child's recv now reports the closed pipe, and it returns
    child.join().expect("join");
    println!("  squares from the child: {squares:?}; shared counter = {}", counter.get().expect("get"));

    let mut shm = SharedMemory::create(16).expect("shared memory");
    shm.as_mut_slice()[..2].copy_from_slice(b"ok");
    println!("  shared memory `{}` says {}", shm.name(), String::from_utf8_lossy(&shm.as_slice()[..2]));

    // Python's ShareableList, made through a SharedMemoryManager: it outlives its handles
    // and goes when the manager does (also if this process is killed).
    let smm = SharedMemoryManager::new();
    let list = smm.shareable_list([ShareableItem::from("draft"), 0.into(), ShareableItem::None]).expect("list");
    let mut p = Process::new(finish_list, list.name().to_string());
    p.start().expect("start");
    p.join().expect("join");
    println!(
        "  a ShareableList a child attached by name and edited (true: a 21-byte string was refused for an 8-byte slot): {:?}",
        list.to_vec().expect("read")
    );
    drop(smm);

    let lock = Lock::new().expect("lock");
    let mut p = Process::new(die_holding, lock.clone());
    p.start().expect("start");
    p.join().expect("join");
    match lock.acquire_timeout(long) {
        Err(LockError::OwnerDied(_guard)) => {
            println!("  a child aborted holding a lock: the next locker is told, no deadlock")
        }
        other => println!("  lock: unexpected {other:?}"),
    }
}

fn count_words(args: (DictProxy<String, u64>, String)) {
    let (counts, text) = args;
    for word in text.split_whitespace() {
        // Runs in the manager's server, under the dict's lock: no update is lost.
        counts.modify(word, |n: Option<u64>| n.unwrap_or(0) + 1).unwrap();
    }
}

/// Managers: shared objects in a server process, used through proxies from any process.
fn managers() {
    let tour = || -> Result<(), ManagerError> {
        section("Manager: shared dict, list, queue, value and locks in a server process");
        let manager = Manager::start()?;
        let counts = manager.dict::<String, u64>()?;
        let mut workers = Vec::new();
        for text in ["a rose is a rose", "is a rose a rose"] {
            let mut p = Process::new(count_words, (counts.clone(), text.to_string()));
            p.start()?;
            workers.push(p);
        }
        for p in &workers {
            p.join()?;
        }
        println!("  word counts from two processes (atomic modify): {:?}", counts.items()?);
        let q = manager.queue::<String>(0)?;
        q.put("a queue proxy can go to pool tasks".into())?;
        println!("  queue: {}", q.get()?);
        let remote = Manager::builder().tcp("127.0.0.1:0".parse().unwrap()).authkey(b"secret").start()?;
        match Manager::connect(remote.address(), b"not the secret") {
            Err(e) => println!("  remote manager at {}, wrong key: {e}", remote.address()),
            Ok(_) => println!("  remote manager let a wrong key in?!"),
        }
        Ok(())
    };
    if let Err(e) = tour() {
        eprintln!("  manager tour failed: {e}");
        std::process::exit(1);
    }
}

fn square(x: u64) -> u64 {
    x * x
}

/// Waits until `go` is set (the task the tour holds back), then returns `name`.
fn when_set((name, go): (String, Option<multiproc::Event>)) -> String {
    if let Some(go) = go {
        let _ = go.wait();
    }
    name
}

/// Task 3 of the pool's map kills its own worker (SIGKILL).
fn square_but_three_dies(x: u64) -> u64 {
    if x == 3 {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
    x * x
}

/// Pool: Python's `Pool`, where a crashing task costs that task only.
fn pool() -> Result<(), Box<dyn std::error::Error>> {
    section("Pool: apply, map, imap, as_completed — and a worker that dies costs one task");
    let pool = multiproc::Pool::new(2)?;
    println!("  apply(square, 12) = {}", pool.apply(square, 12)?);
    println!("  map(square, 0..8) = {:?}", pool.map(square, 0..8)?);
    let firsts: Vec<u64> = pool.imap(square, 1..).take(5).collect::<Result<_, _>>()?;
    println!("  imap over an endless input, first five: {firsts:?}");
    // The first task waits for an event the tour sets only once the second has come
    // back: completion order differs from submission order, whatever the machine's speed.
    let go = multiproc::Event::new()?;
    let held = pool.apply_async(when_set, ("held back".to_string(), Some(go.clone())));
    let free = pool.apply_async(when_set, ("free".to_string(), None));
    let mut completed = multiproc::as_completed([held, free]);
    let mut in_completion_order = vec![completed.next().expect("two tasks").get()?];
    go.set();
    in_completion_order.extend(completed.map(|h| h.get()).collect::<Result<Vec<_>, _>>()?);
    println!("  as_completed, submitted [held back, free]: {in_completion_order:?}");
    let results = pool.map_results(square_but_three_dies, 0..8);
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(v) => print!("  {i}:{v}"),
            Err(e) => print!("\n  item {i} failed: {e}\n"),
        }
    }
    println!();
    println!("  the pool goes on: apply(square, 9) = {}", pool.apply(square, 9)?);
    pool.close();
    pool.join()?;
    let s = pool.stats();
    // 1 + 8 + 5 + 2 + 7 + 1 results came back; imap ran some more, as said below.
    let used = 24;
    println!(
        "  stats: {} worker died; tasks done {} the {used} results used: imap runs ahead of its consumer \
         (up to a window of items), so items past the five taken may have run before the iterator was dropped",
        s.workers_died,
        if s.tasks_done >= used { "≥" } else { "<" },
    );
    Ok(())
}

/// Loaded once, in the fork server's template: every worker forked from it shares it.
static PRIMES: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();

fn load_primes() {
    PRIMES.get_or_init(|| (2..200_000u64).filter(|n| (2..).take_while(|d| d * d <= *n).all(|d| n % d != 0)).collect());
}

/// The `i`th prime, from the preloaded table (0 in a worker without it).
fn nth_prime(i: usize) -> u64 {
    PRIMES.get().and_then(|p| p.get(i).copied()).unwrap_or(0)
}

fn fork_server() -> Result<(), Box<dyn std::error::Error>> {
    section("a fork server: workers forked from a preloaded template");
    let pool = multiproc::Pool::builder()
        .processes(2)
        .start_method(multiproc::StartMethod::ForkServer)
        .preload(load_primes)
        .build()?;
    println!("  primes #0, #10, #10000 from the preloaded table: {:?}", pool.map(nth_prime, [0, 10, 10_000])?);
    let died = pool.apply(square_but_three_dies, 3).is_err();
    println!("  a worker died: {died}; its replacement is forked too: prime #100 = {}", pool.apply(nth_prime, 100)?);
    let s = pool.stats();
    println!(
        "  stats: {} died, template pid {:?}, templates started {}",
        s.workers_died, s.fork_server_pid, s.fork_servers_started
    );
    // One template for several pools: started once, its preload shared by all of them.
    let server = multiproc::ForkServer::with_preload(load_primes)?;
    let a = multiproc::Pool::builder().processes(1).fork_server(&server).build()?;
    let b = multiproc::Pool::builder().processes(1).fork_server(&server).build()?;
    println!(
        "  two pools, one shared template (pid {:?}): prime #7 = {}, prime #8 = {}",
        server.pid(),
        a.apply(nth_prime, 7)?,
        b.apply(nth_prime, 8)?
    );
    Ok(())
}

/// Counts until the pool's soft timeout tells it to stop, then returns its count.
fn count_until_told(_: ()) -> u64 {
    let mut n = 0;
    while !multiproc::task::cancelled() {
        n += 1;
        std::thread::yield_now();
    }
    n
}

fn put_one(q: Queue<String>) {
    q.put(format!("hello from pid {}", current_process().pid())).unwrap();
}

/// Async code: one runtime thread awaits a pool result, a queue and a process's end,
/// none of which blocks it; and a task that is told to stop before it would be killed.
fn async_part() -> Result<(), Box<dyn std::error::Error>> {
    section("Async: awaiting results, queues and processes; a task told to stop in time");
    // The runtime starts after `init()`, by hand: children never carry its threads.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let pool = multiproc::Pool::builder()
        .processes(1)
        .soft_timeout(std::time::Duration::from_millis(50))
        .timeout(std::time::Duration::from_secs(60))
        .build()?;
    let q = Queue::new()?;
    let mut p = Process::new(put_one, q.clone());
    p.start()?;
    rt.block_on(async {
        let steps = pool.apply_async(count_until_told, ()).await?;
        println!("  a task told to stop after 50 ms returned its count: {steps} steps (killed at 60 s otherwise)");
        println!("  queue.get_async(): {:?}", q.get_async().await?);
        println!("  process.join_async(): exit code {}", p.join_async().await?);
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

/// Ways a task can misbehave beyond crashing, each of which once cost more than itself.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
enum Misbehaviour {
    Fine,
    /// Shuts down its worker's connection to the pool, then returns.
    CutsItsSocket,
    /// Returns more than the pool's frame limit.
    HugeResult,
    /// Its value's `Serialize` panics.
    PanicsWhileEncoding,
    /// Panics, and panics again while unwinding: the process aborts, as under
    /// `panic = "abort"`.
    PanicsTwice,
    /// Runs a shell that signals its whole process group (`kill 0`), then returns.
    SignalsItsGroup,
    /// Truncates every shared-memory file its worker has open, then returns.
    TruncatesItsFiles,
}

struct PanicsWhenDroppedUnwinding;

impl Drop for PanicsWhenDroppedUnwinding {
    fn drop(&mut self) {
        if std::thread::panicking() {
            panic!("and again while unwinding");
        }
    }
}

/// A value whose `Serialize` panics.
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("this value refuses to be encoded")
    }
}

fn misbehave(how: Misbehaviour) -> Vec<u8> {
    match how {
        Misbehaviour::Fine => vec![1, 2, 3],
        Misbehaviour::CutsItsSocket => {
            shut_down_own_sockets();
            vec![4]
        }
        Misbehaviour::HugeResult => vec![0; 4 << 20],
        Misbehaviour::PanicsWhileEncoding => {
            // Encoding happens in the worker, after the function returned.
            let _ = postcard::to_allocvec(&Unencodable);
            vec![]
        }
        Misbehaviour::PanicsTwice => {
            // The runtime writes "thread caused non-unwinding panic. aborting." straight to
            // stderr; this worker is about to die anyway, so its stderr goes nowhere.
            silence_stderr();
            let _guard = PanicsWhenDroppedUnwinding;
            panic!("a task that panics")
        }
        Misbehaviour::SignalsItsGroup => {
            let _ = std::process::Command::new("sh").arg("-c").arg("kill -TERM 0; sleep 5").status();
            vec![6]
        }
        Misbehaviour::TruncatesItsFiles => {
            for entry in std::fs::read_dir("/proc/self/fd").into_iter().flatten().flatten() {
                if std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:")) {
                    let _ = std::fs::OpenOptions::new().write(true).open(entry.path()).and_then(|f| f.set_len(0));
                }
            }
            vec![7]
        }
    }
}

/// Points this process's stderr at /dev/null.
fn silence_stderr() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stderr(&null);
    }
}

/// Shuts down every socket of this process, through duplicates taken by pidfd.
fn shut_down_own_sockets() {
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
    let Ok(me) = pidfd_open(getpid(), PidfdFlags::empty()) else { return };
    for entry in std::fs::read_dir("/proc/self/fd").into_iter().flatten().flatten() {
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if is_socket && let Ok(dup) = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()) {
            let _ = rustix::net::shutdown(dup, rustix::net::Shutdown::Both);
        }
    }
}

/// Accounting: whatever a task does, its item settles once, with its own cause.
///
/// The number of workers that die is not printed: it differs between runs by design.
/// When a worker dies holding more than one unanswered item (results wait up to 200 µs
/// to travel in a batch), the pool cannot tell which item killed it, so each suspect runs
/// again alone and is charged only if it kills a worker again; `CutsItsSocket` then
/// costs two workers, and still fails once, with its own cause.
fn accounting() -> Result<(), Box<dyn std::error::Error>> {
    section("Accounting: whatever a task does, it settles once and costs only itself");
    let pool = multiproc::Pool::builder().processes(2).max_frame_size(1 << 20).build()?;
    use Misbehaviour::*;
    let jobs = [
        Fine,
        CutsItsSocket,
        Fine,
        HugeResult,
        Fine,
        PanicsWhileEncoding,
        Fine,
        PanicsTwice,
        Fine,
        SignalsItsGroup,
        TruncatesItsFiles,
        Fine,
    ];
    let handles: Vec<_> = jobs.iter().map(|&job| pool.apply_async(misbehave, job)).collect();
    for (job, h) in jobs.iter().zip(handles) {
        match h.get() {
            Ok(v) => println!("  {:<20} -> ok, {} bytes", format!("{job:?}"), v.len()),
            Err(e) => println!("  {:<20} -> {e}", format!("{job:?}")),
        }
    }
    let s = pool.stats();
    println!(
        "  stats: {} tasks done, {} panicked, {} failed for their worker",
        s.tasks_done, s.tasks_panicked, s.tasks_worker_died
    );
    pool.close();
    pool.join()?;
    results_do_not_wait_for_the_next_task()?;
    callback_waits_on_its_own_pool()
}

/// A callback runs on the thread that delivers the pool's results: a wait there for
/// another result of the same pool could never end (in Python it hangs the pool), so it
/// is answered at once, and the pool goes on.
fn callback_waits_on_its_own_pool() -> Result<(), Box<dyn std::error::Error>> {
    let pool = std::sync::Arc::new(multiproc::Pool::new(1)?);
    let (tx, rx) = std::sync::mpsc::channel();
    let inner = pool.clone();
    let opts = multiproc::TaskOptions::new().callback(move |v: &u64| {
        let _ = tx.send(inner.apply_async(square, *v).get());
    });
    println!("  a task's value: {}", pool.apply_async_with(square, 3, opts).get()?);
    match rx.recv()? {
        Err(e) => println!("  its callback waited there for the same pool: {e}"),
        Ok(v) => println!("  its callback got {v}"),
    }
    println!("  and the pool goes on: {:?}", pool.map(square, 1..4u64)?);
    pool.close();
    pool.join()?;
    Ok(())
}

/// Answers with what the tour sends it, however long that takes.
fn waits_to_be_told(conn: Connection<u32>) -> u32 {
    conn.recv().unwrap_or(0)
}

/// A worker sends tiny tasks' results in batches, but a batch never waits for the task
/// after it: here one worker runs 100 tiny tasks, then one that waits to be told, and
/// every tiny result comes while that one still waits.
fn results_do_not_wait_for_the_next_task() -> Result<(), Box<dyn std::error::Error>> {
    let pool = multiproc::Pool::new(1)?;
    pool.map(square, 0..10_000u64)?; // measured tiny: the worker now holds many tasks at once
    let tiny: Vec<_> = (0..100u64).map(|i| pool.apply_async(square, i)).collect();
    let (tell, theirs) = Pipe::duplex::<u32>()?;
    let waiting = pool.apply_async(waits_to_be_told, theirs);
    let sum: u64 = tiny.into_iter().map(|h| h.get()).sum::<Result<u64, _>>()?;
    println!("  100 tiny results while the next task still runs: sum {sum}, that task done: {}", waiting.ready());
    tell.send(7)?;
    println!("  then it was told, and answered {}", waiting.get()?);
    pool.close();
    pool.join()?;
    Ok(())
}

/// Sleeps far longer than the timeout it is given.
fn oversleep(_: ()) -> u32 {
    std::thread::sleep(std::time::Duration::from_secs(60));
    0
}

/// Counts its attempts in `attempts`; the first one kills its own worker.
fn dies_the_first_time(attempts: Value<u32>) -> u32 {
    let n = {
        let mut a = attempts.lock().expect("lock");
        *a += 1;
        *a
    };
    if n == 1 {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
    n
}

/// Timeouts, retries and progress: a task past its time is killed, a task whose worker
/// died runs again, and a map reports how far it got.
fn timeouts_retries_progress() -> Result<(), Box<dyn std::error::Error>> {
    section("Timeouts, retries, progress");
    let pool = multiproc::Pool::new(2)?;
    let ms = std::time::Duration::from_millis;
    let late = pool.apply_async_with(oversleep, (), multiproc::TaskOptions::new().timeout(ms(200)));
    match late.get() {
        Err(e @ multiproc::TaskError::Timeout { .. }) => println!("  timeout(200 ms): {e}"),
        other => println!("  timeout: unexpected {other:?}"),
    }
    let attempts = Value::new(0u32)?;
    let retried = pool.apply_async_with(dies_the_first_time, attempts, multiproc::TaskOptions::new().retries(2));
    println!("  retries(2): a task whose worker was SIGKILLed succeeded on attempt {}", retried.get()?);
    // Progress from the results themselves: imap hands them over in order as they come.
    // (With the `progress` feature, `MapOptions::progress(true)` draws a bar instead.)
    let opts = multiproc::MapOptions::new().chunksize(multiproc::Chunksize::Fixed(5));
    print!("  progress of a map of 40 items:");
    for (i, r) in pool.imap_with(square, 0..40u64, &opts).enumerate() {
        r?;
        if (i + 1) % 10 == 0 {
            print!(" {}/40", i + 1);
        }
    }
    println!();
    pool.close();
    pool.join()?;
    Ok(())
}

/// What a sandboxed task tries.
#[cfg(feature = "sandbox")]
fn untrusted(what: String) -> String {
    match what.as_str() {
        "run a shell" => {
            std::os::unix::process::CommandExt::exec(&mut std::process::Command::new("/bin/sh")).to_string()
        }
        "write a file" => format!("{:?}", std::fs::write(std::env::temp_dir().join("multiproc-tour"), b"x")),
        _ => format!("decoded {} bytes", what.len()),
    }
}

/// Sandbox: workers that may not run a program nor change the filesystem.
#[cfg(feature = "sandbox")]
fn sandbox() -> Result<(), Box<dyn std::error::Error>> {
    section("Sandbox: a task that breaks the policy fails naming the rule; the pool goes on");
    // Best effort: on a kernel without seccomp the tour runs unconfined, and says so.
    let policy = multiproc::Sandbox::new().no_exec().read_only_syscalls().best_effort(true);
    let pool = multiproc::Pool::builder().processes(1).sandbox(policy).build()?;
    for what in ["an input", "run a shell", "write a file", "another input"] {
        match pool.apply(untrusted, what.to_string()) {
            Ok(v) => println!("  {what:<14} -> {v}"),
            Err(e) => println!("  {what:<14} -> {e}"),
        }
    }
    let s = pool.stats();
    println!("  in effect: {}", s.sandbox.unwrap_or_default());
    println!("  {} workers started (each denial cost its worker, replaced)", s.workers_started);
    pool.close();
    pool.join()?;
    Ok(())
}

/// The broker named by `MULTIPROC_NATS_URL`, as `host:port`, if that variable is set.
fn broker_address() -> Option<String> {
    let url = std::env::var("MULTIPROC_NATS_URL").ok()?;
    let first = url.split(',').next()?.trim();
    let rest = first.split_once("://").map_or(first, |(_, r)| r);
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h).trim_end_matches('/');
    Some(if host_port.contains(':') { host_port.to_string() } else { format!("{host_port}:4222") })
}

/// The cluster: the same pool calls on workers reached through a NATS broker, run by the
/// `cluster` example of `multiproc-nats` when a broker answers; otherwise, how to run it.
fn cluster() {
    section("Cluster: the same pool across machines, through NATS JetStream");
    let how = "start `nats-server -js`, then `cargo build --release -p multiproc-nats --example cluster` and \
               `MULTIPROC_NATS_URL=nats://127.0.0.1:4222 cargo run --release --example tour`";
    let Some(address) = broker_address() else {
        println!("  skipped: MULTIPROC_NATS_URL is not set. To see it: {how}");
        return;
    };
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(address.as_str())
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(1)).is_ok());
    let binary = std::env::current_exe().ok().and_then(|me| Some(me.parent()?.join("cluster")));
    match (reachable, binary.filter(|b| b.exists())) {
        (false, _) => println!("  skipped: no broker answers at {address}. To see it: {how}"),
        (true, None) => {
            println!("  skipped: the broker at {address} answers, but the cluster example is not built: {how}")
        }
        (true, Some(binary)) => run_cluster(&binary),
    }
}

/// Starts a cluster worker, maps 8 tasks on the cluster, reports, stops the worker.
fn run_cluster(binary: &std::path::Path) {
    use std::process::{Command, Stdio};
    let worker = Command::new(binary).arg("--worker").stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    let Ok(mut worker) = worker else {
        println!("  could not start a cluster worker from {}", binary.display());
        return;
    };
    match Command::new(binary).arg("8").stderr(Stdio::null()).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let results = text.lines().filter(|l| l.starts_with("collatz_steps(")).count();
            println!("  map of 8 tasks through the broker on a worker process: {results} of 8 results came back");
        }
        Err(e) => println!("  the cluster client did not run: {e}"),
    }
    let _ = worker.kill();
    let _ = worker.wait();
}

#[cfg(not(feature = "sandbox"))]
fn sandbox() -> Result<(), Box<dyn std::error::Error>> {
    section("Sandbox");
    println!("  (built without the `sandbox` feature: `--features sandbox` shows a sandboxed pool)");
    Ok(())
}
