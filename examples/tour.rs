//! A walk through every capability of multiproc, in a few seconds.
//!
//! Run with `cargo run --release --example tour`.

use std::time::Instant;

use multiproc::manager::DictProxy;
use multiproc::{
    Connection, Lock, LockError, Manager, ManagerError, Pipe, Process, Queue, SharedMemory, Value, current_process,
    parent_process,
};

fn main() -> Result<(), multiproc::Error> {
    // First line of main: a child becomes its job here and never returns.
    multiproc::init();
    let start = Instant::now();
    processes()?;
    pool().map_err(|e| multiproc::Error::Io(std::io::Error::other(e.to_string())))?;
    accounting().map_err(|e| multiproc::Error::Io(std::io::Error::other(e.to_string())))?;
    async_part().map_err(|e| multiproc::Error::Io(std::io::Error::other(e.to_string())))?;
    ipc();
    managers();
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
        "panic" => panic!("a bug in the child"),
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
    println!("  a panicking child exits with {:?} (its message went to its stderr above)", panicking.exitcode());

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

fn die_holding(lock: Lock) {
    let _held = lock.acquire().expect("lock");
    std::process::abort();
}

/// IPC: a pipe in, a queue out, a shared counter, a shared-memory segment, and a lock
/// recovered from a process that died holding it — all handles passed as arguments.
fn ipc() {
    section("Queue, Pipe, Value, SharedMemory, Lock: handles that travel to children");
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
    println!("  stats: {} workers started, {} died, {} tasks done", s.workers_started, s.workers_died, s.tasks_done);
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
            let _guard = PanicsWhenDroppedUnwinding;
            panic!("a task that panics")
        }
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
fn accounting() -> Result<(), Box<dyn std::error::Error>> {
    section("Accounting: whatever a task does, it settles once and costs only itself");
    let pool = multiproc::Pool::builder().processes(2).max_frame_size(1 << 20).build()?;
    use Misbehaviour::*;
    let jobs = [Fine, CutsItsSocket, Fine, HugeResult, Fine, PanicsWhileEncoding, Fine, PanicsTwice, Fine];
    let handles: Vec<_> = jobs.iter().map(|&job| pool.apply_async(misbehave, job)).collect();
    for (job, h) in jobs.iter().zip(handles) {
        match h.get() {
            Ok(v) => println!("  {:<20} -> ok, {} bytes", format!("{job:?}"), v.len()),
            Err(e) => println!("  {:<20} -> {e}", format!("{job:?}")),
        }
    }
    let s = pool.stats();
    println!(
        "  stats: {} workers started, {} died, {} tasks done, {} panicked, {} failed for their worker",
        s.workers_started, s.workers_died, s.tasks_done, s.tasks_panicked, s.tasks_worker_died
    );
    pool.close();
    pool.join()?;
    Ok(())
}
