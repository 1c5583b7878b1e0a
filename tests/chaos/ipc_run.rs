//! Queue, Pipe and Manager runs: a child process uses the object and is SIGKILLed in the
//! middle; what it had not finished must not cost anyone else anything.

use std::time::Duration;

use multiproc::manager::{DictProxy, QueueProxy};
use multiproc::{Connection, Manager, Pipe, PipeError, Process, Queue, RawValue};

use crate::config::Config;
use crate::rng::Rng;
use crate::tally::Tally;

/// Waiting for something that must come: only a broken run waits this long.
const PATIENCE: Duration = Duration::from_secs(30);
/// The manager dict key the client counts its completed puts under.
const COUNTER: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpcKind {
    /// A queue consumer killed while it takes items; the producer never waits.
    QueueKill,
    /// The same with a bounded queue, so that the producer waits for space.
    QueueKillWaitingProducer,
    /// An echoing pipe peer killed in the middle of messages.
    PipeKill,
    /// A manager client killed in the middle of requests.
    ManagerKill,
}

impl IpcKind {
    pub const ALL: [IpcKind; 4] =
        [IpcKind::QueueKill, IpcKind::QueueKillWaitingProducer, IpcKind::PipeKill, IpcKind::ManagerKill];

    pub fn name(self) -> &'static str {
        match self {
            IpcKind::QueueKill => "queue_kill",
            IpcKind::QueueKillWaitingProducer => "queue_kill_waiting_producer",
            IpcKind::PipeKill => "pipe_kill",
            IpcKind::ManagerKill => "manager_kill",
        }
    }
}

#[derive(Debug, Clone)]
pub struct IpcPlan {
    pub kind: IpcKind,
    /// Items the run sends in all.
    pub items: u64,
    /// The child is killed once this many of its items were seen.
    pub kill_after: u64,
    /// For queue runs: consumers one after the other, each killed after forwarding this
    /// many items (or, `silent`, after this many milliseconds).
    pub kill_steps: Vec<u64>,
    /// Queue consumers keep what they take instead of forwarding it.
    pub silent: bool,
    /// Silent consumers: no item may go missing, not even the one a consumer may hold
    /// when it dies (rare: a few instructions between `get` and its note).
    pub strict: bool,
    /// The bounded queue's size, or the pipe's largest message.
    pub size: usize,
}

impl IpcPlan {
    /// A plan of an enabled kind, or `None` if no kind is enabled.
    pub fn new(rng: &mut Rng, cfg: &Config) -> Option<IpcPlan> {
        let kinds: Vec<IpcKind> = IpcKind::ALL.into_iter().filter(|k| cfg.enabled(k.name())).collect();
        if kinds.is_empty() {
            return None;
        }
        let kind = rng.pick(&kinds);
        let items = rng.range(1, 400);
        let size = match kind {
            IpcKind::QueueKillWaitingProducer => rng.range(1, 4) as usize,
            IpcKind::PipeKill => rng.pick(&[16, 4096, 300_000]),
            _ => 0,
        };
        let consumers = rng.range(1, 4);
        let silent = rng.chance(1, 2);
        let kill_steps =
            (0..consumers).map(|_| if silent { rng.range(0, 20) } else { rng.range(0, items / consumers) }).collect();
        let strict = cfg.checks("queue_kill_waiting_producer");
        Some(IpcPlan { kind, items, kill_after: rng.range(0, items - 1), kill_steps, silent, strict, size })
    }

    pub fn describe(&self) -> String {
        format!(
            "ipc run: {} ({:?}), {} items, kill after {}, size {}",
            self.kind.name(),
            self.kind,
            self.items,
            self.kill_after,
            self.size
        )
    }
}

/// Runs `plan`; returns its tally and the pids of its children.
pub fn run(plan: &IpcPlan) -> (Tally, Vec<u32>) {
    let mut tally = Tally { runs: 1, items: plan.items, faults: 1, ..Tally::default() };
    let pids = match plan.kind {
        IpcKind::QueueKill | IpcKind::QueueKillWaitingProducer => run_queue(plan, &mut tally),
        IpcKind::PipeKill => run_pipe(plan, &mut tally),
        IpcKind::ManagerKill => run_manager(plan, &mut tally),
    };
    (tally, pids)
}

/// Kills `p`, waits for it, and checks that SIGKILL is what ended it.
fn kill(p: &Process, tally: &mut Tally) {
    p.kill().unwrap();
    p.join().unwrap();
    if p.exitcode() != Some(-9) {
        tally.wrong(format!("the killed child ended with {:?}", p.exitcode()));
    }
}

/// Takes items off the queue and keeps them, noting how far it got: almost always
/// inside `get` when killed (rarely between `get` and the note: then one item is in its
/// hands).
fn consume_silently((q, taken): (Queue<u64>, RawValue<u64>)) {
    loop {
        let v = q.get().unwrap();
        taken.store(v.saturating_add(1));
    }
}

/// Takes items off the queue and hands each to the parent through the pipe.
fn consume_forward((q, out): (Queue<u64>, Connection<u64>)) {
    loop {
        let v = q.get().unwrap();
        out.send(v).unwrap();
    }
}

/// The producer's last message: after it, nothing more comes.
const END: u64 = u64::MAX;

/// Puts `0..n`, then `END`.
fn produce((q, n): (Queue<u64>, u64)) {
    for i in (0..n).chain([END]) {
        q.put(i).unwrap();
    }
}

fn run_queue(plan: &IpcPlan, tally: &mut Tally) -> Vec<u32> {
    let q = if plan.kind == IpcKind::QueueKill { Queue::new() } else { Queue::bounded(plan.size) }.unwrap();
    let n = plan.items;
    let mut producer = Process::new(produce, (q.clone(), n));
    producer.start().unwrap();
    let mut pids: Vec<u32> = producer.pid().into_iter().collect();
    let mut seen = Vec::new();
    // Where each killed consumer's forwarded items end in `seen`: the item right after
    // may be missing (it was in the consumer's hands).
    let mut boundaries = Vec::new();
    let mut target = 0;
    let taken = RawValue::new(0u64).unwrap();
    for &step in &plan.kill_steps {
        target += step;
        if plan.silent {
            pids.extend(one_silent_consumer(&q, &taken, step, tally));
        } else {
            pids.extend(one_consumer(&q, target, &mut seen, tally));
        }
        boundaries.push(seen.len());
    }
    // Each forwarding consumer may have taken one item unseen; a silent one, any number.
    let at_least = if plan.silent { 0 } else { n - boundaries.len().min(n as usize) as u64 };
    drain(&q, &producer, &mut seen, at_least, tally);
    if !producer.join_timeout(PATIENCE).unwrap() {
        tally.lost(format!("the producer is still blocked in put after {} items came", seen.len()));
        kill(&producer, tally);
    }
    if plan.silent {
        check_after_silent(&seen, taken.load(), n, plan.strict, tally);
    } else {
        check_sequence(&seen, &boundaries, 1, n, tally);
    }
    q.put(7).unwrap();
    if q.get_timeout(PATIENCE).ok() != Some(7) {
        tally.wrong("the queue does not work after the kills".into());
    }
    pids
}

/// Starts a consumer, lets it forward items until `target` are in `seen` (or `END`
/// is), kills it, and collects what it forwarded.
fn one_consumer(q: &Queue<u64>, target: u64, seen: &mut Vec<u64>, tally: &mut Tally) -> Option<u32> {
    let (from_child, to_parent) = Pipe::simplex::<u64>().unwrap();
    let mut victim = Process::new(consume_forward, (q.clone(), to_parent));
    victim.start().unwrap();
    while (seen.len() as u64) < target && seen.last() != Some(&END) {
        match from_child.recv_timeout(PATIENCE) {
            Ok(v) => seen.push(v),
            Err(e) => {
                tally.lost(format!("a consumer stopped forwarding after {} items in all: {e}", seen.len()));
                break;
            }
        }
    }
    kill(&victim, tally);
    // Whatever it forwarded before it died is in the pipe now (and its end is closed).
    while from_child.poll(Some(Duration::ZERO)).unwrap_or(false) {
        match from_child.recv() {
            Ok(v) => seen.push(v),
            Err(_) => break,
        }
    }
    victim.pid()
}

/// Starts a consumer that keeps what it takes, and kills it `delay_ms` later (a random
/// moment, most likely inside `get`).
fn one_silent_consumer(q: &Queue<u64>, taken: &RawValue<u64>, delay_ms: u64, tally: &mut Tally) -> Option<u32> {
    let mut victim = Process::new(consume_silently, (q.clone(), taken.clone()));
    victim.start().unwrap();
    // The fault's moment, not a wait for a condition.
    std::thread::sleep(Duration::from_millis(delay_ms));
    kill(&victim, tally);
    victim.pid()
}

/// Takes items until `END`, or until the producer has ended, `at_least` items are in
/// and the queue is empty (the killed consumers may have taken `END`).
fn drain(q: &Queue<u64>, producer: &Process, seen: &mut Vec<u64>, at_least: u64, tally: &mut Tally) {
    while seen.last() != Some(&END) {
        let enough = seen.len() as u64 >= at_least;
        // Once enough items are in, whatever is still due comes at once or never: look
        // at the producer between short waits.
        match q.get_timeout(if enough { Duration::from_millis(50) } else { PATIENCE }) {
            Ok(v) => seen.push(v),
            Err(multiproc::QueueError::Empty) if enough => {
                if producer.join_timeout(Duration::ZERO).unwrap() {
                    while let Ok(v) = q.get_nowait() {
                        seen.push(v);
                    }
                    return;
                }
            }
            Err(e) => {
                tally.lost(format!("items stopped coming after {} (at least {at_least} due): {e}", seen.len()));
                return;
            }
        }
    }
}

/// After silent consumers took `0..taken`, `seen` is the rest in order; if not `strict`,
/// the one item right after may be missing (the last consumer may have died holding it).
fn check_after_silent(seen: &[u64], taken: u64, n: u64, strict: bool, tally: &mut Tally) {
    let items = seen.strip_suffix(&[END]).unwrap_or(seen);
    let exact: Vec<u64> = (taken..n).collect();
    if items == exact.as_slice() || !strict && items == exact.get(1..).unwrap_or(&[]) {
        return;
    }
    let head: Vec<&u64> = items.iter().take(5).collect();
    tally.lost(format!("consumers noted {taken} taken; then came {} items starting {head:?} (of {n})", items.len()));
}

/// `seen` (with `END` at most once, last) is `0..n` in order, except that right after
/// each boundary up to `taken` items may be missing (taken by a killed consumer).
fn check_sequence(seen: &[u64], boundaries: &[usize], taken: u64, n: u64, tally: &mut Tally) {
    let items = seen.strip_suffix(&[END]).unwrap_or(seen);
    let slack = |at: usize| boundaries.iter().filter(|&&b| b == at).count() as u64 * taken;
    let mut expect = 0;
    for (i, &v) in items.iter().enumerate() {
        if v < expect || v > expect + slack(i) {
            tally.lost(format!(
                "at {i} got {v}, expected {expect} (+{}); kills after {boundaries:?}: {items:?}",
                slack(i)
            ));
            return;
        }
        expect = v + 1;
    }
    if expect + slack(items.len()) < n {
        tally.lost(format!("items {expect}..{n} never arrived; kills after {boundaries:?}"));
    }
}

/// Echoes every message back with its number doubled.
fn echo(conn: Connection<(u64, Vec<u8>)>) {
    while let Ok((i, buf)) = conn.recv() {
        if conn.send((i * 2, buf)).is_err() {
            return;
        }
    }
}

fn run_pipe(plan: &IpcPlan, tally: &mut Tally) -> Vec<u32> {
    let (ours, theirs) = Pipe::duplex::<(u64, Vec<u8>)>().unwrap();
    let mut peer = Process::new(echo, theirs);
    peer.start().unwrap();
    let message = |i: u64| (i, vec![(i % 251) as u8; (i as usize * 7919) % (plan.size + 1)]);
    for i in 0..plan.kill_after {
        ours.send(message(i)).unwrap();
        match ours.recv_timeout(PATIENCE) {
            Ok((j, buf)) if j == i * 2 && buf == message(i).1 => {}
            other => tally.wrong(format!("echo of message {i}: {:?}", other.map(|(j, b)| (j, b.len())))),
        }
    }
    // The last message is in flight (or half-read) when the peer dies.
    let last = plan.kill_after;
    let sent = ours.send(message(last));
    kill(&peer, tally);
    match (sent, ours.recv_timeout(PATIENCE)) {
        (_, Ok((j, buf))) if j == last * 2 && buf == message(last).1 => {}
        (_, Err(PipeError::TimedOut)) => tally.lost("recv from a dead peer waited for its timeout".into()),
        (_, Err(_)) => {}
        (_, Ok((j, buf))) => tally.wrong(format!("a garbled echo from a dead peer: {j}, {} bytes", buf.len())),
    }
    if ours.send(message(last + 1)).is_ok() && ours.send((0, vec![0; 1 << 20])).is_ok() {
        tally.wrong("sending a MiB to a dead peer succeeded".into());
    }
    peer.pid().into_iter().collect()
}

/// Puts `0, 1, 2, ...` on the manager queue, counting each completed put in the dict.
fn manager_client((q, d): (QueueProxy<u64>, DictProxy<u64, u64>)) {
    for i in 0.. {
        q.put(i).unwrap();
        d.modify(&COUNTER, |n: Option<u64>| n.unwrap_or(0) + 1).unwrap();
        d.insert(i % 8, i).unwrap();
    }
}

fn run_manager(plan: &IpcPlan, tally: &mut Tally) -> Vec<u32> {
    let mut m = Manager::start().unwrap();
    let (q, d) = (m.queue::<u64>(0).unwrap(), m.dict::<u64, u64>().unwrap());
    let mut client = Process::new(manager_client, (q.clone(), d.clone()));
    client.start().unwrap();
    let mut seen = Vec::new();
    while (seen.len() as u64) <= plan.kill_after {
        match q.get_timeout(PATIENCE) {
            Ok(v) => seen.push(v),
            Err(e) => {
                tally.lost(format!("the client's puts stopped after {}: {e}", seen.len()));
                break;
            }
        }
    }
    kill(&client, tally);
    while let Ok(v) = q.get_nowait() {
        seen.push(v);
    }
    // Every put the server took is on the queue, once, in order; the count of completed
    // puts is that number or one less (the client died between put and count).
    if seen.iter().enumerate().any(|(i, &v)| v != i as u64) {
        tally.lost(format!("the manager queue's items are not 0..{}: {seen:?}", seen.len()));
    }
    let count = d.get(&COUNTER).unwrap().unwrap_or(0);
    let puts = seen.len() as u64;
    if count != puts && count + 1 != puts {
        tally.wrong(format!("{puts} puts arrived but the client counted {count}"));
    }
    d.insert(1_000, 1).unwrap();
    if d.get(&1_000).unwrap() != Some(1) {
        tally.wrong("the manager does not serve after the kill".into());
    }
    let pids: Vec<u32> = client.pid().into_iter().chain(m.pid()).collect();
    drop((q, d));
    if let Err(e) = m.shutdown() {
        tally.wrong(format!("manager shutdown: {e}"));
    }
    pids
}
