//! A consumer SIGKILLed inside `get` while a producer waits for room must not take a
//! message with it. Each round, a producer thread waits in `put` on a full queue; a
//! consumer is let go, and the producer kills it the moment its `put` returns (the
//! consumer has made room then, but its `get` may not have returned). Every message put
//! must either have been returned by some consumer's `get` or still be in the queue —
//! but for one that the consumer had already decoded when it was killed: `get` decodes a
//! message before it takes it from the queue, and a kill after the take but before `get`
//! returns takes that message with it (in any queue: that window is the consumer's). The
//! consumer's `Deserialize` marks each message it decodes, so the test tells that case
//! from a message the queue lost, whatever the timing.

use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use multiproc::{Event, Process, Queue, RawValue};
use serde::{Deserialize, Deserializer, Serialize};

multiproc::test_init!();

/// In a consumer: one past the last message its `get` decoded.
static DECODED: OnceLock<RawValue<u64>> = OnceLock::new();

/// A message that marks itself as decoded in the consumer that decodes it.
#[derive(Serialize)]
struct Marked(u64);

impl<'de> Deserialize<'de> for Marked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if let Some(decoded) = DECODED.get() {
            decoded.store(v + 1);
        }
        Ok(Marked(v))
    }
}

/// What a consumer records, each `v + 1` (0: nothing yet): the first message its `get`
/// returned, one past the last it returned, and one past the last it decoded.
#[derive(Clone, Serialize, Deserialize)]
struct Records {
    first: RawValue<u64>,
    next: RawValue<u64>,
    decoded: RawValue<u64>,
}

/// Once let go, takes messages forever, recording them right after each `get` returns.
fn consume((q, go, records): (Queue<Marked>, Event, Records)) {
    let _ = DECODED.set(records.decoded.clone());
    go.wait().unwrap();
    loop {
        let Marked(v) = q.get().unwrap();
        if records.first.load() == 0 {
            records.first.store(v + 1);
        }
        records.next.store(v + 1);
    }
}

/// Whether thread `tid` of this process is asleep (state `S`).
fn asleep(tid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].starts_with('S')
}

const KILLS: usize = 40;

#[test]
fn a_consumer_killed_while_a_producer_waits_loses_no_message() {
    let q = Queue::<Marked>::bounded(2).unwrap();
    let (mut sent, mut returned, mut taken_in_window) = (0u64, 0u64, 0u64);
    for round in 0..KILLS {
        while !q.full() {
            q.put(Marked(sent)).unwrap();
            sent += 1;
        }
        let go = Event::new().unwrap();
        let records = Records {
            first: RawValue::new(0).unwrap(),
            next: RawValue::new(0).unwrap(),
            decoded: RawValue::new(0).unwrap(),
        };
        let mut consumer = Process::new(consume, (q.clone(), go.clone(), records.clone()));
        consumer.start().unwrap();
        std::thread::scope(|s| {
            let (tid_tx, tid_rx) = mpsc::channel();
            let q = &q;
            let pid = rustix::process::Pid::from_raw(consumer.pid().unwrap() as i32).unwrap();
            s.spawn(move || {
                tid_tx.send(rustix::thread::gettid().as_raw_nonzero().get()).unwrap();
                q.put(Marked(sent)).unwrap();
                rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
            });
            let tid = tid_rx.recv().unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !asleep(tid) {
                assert!(Instant::now() < deadline, "round {round}: the producer never waited");
                std::thread::yield_now();
            }
            go.set();
        });
        sent += 1;
        consumer.join().unwrap();
        assert_eq!(consumer.exitcode(), Some(-9));
        let (first, next) = (records.first.load(), records.next.load());
        returned += if first == 0 { 0 } else { next - first + 1 };
        // Killed between decoding a message and recording it: inside that `get`, the
        // message may have been taken already, and is then the consumer's to lose.
        let in_window = records.decoded.load() > next;
        // Whatever no consumer returned must still be queued (the next consumer takes it).
        let missing = sent - returned - q.qsize() as u64 - taken_in_window;
        assert!(
            missing == 0 || (missing == 1 && in_window),
            "round {round}: {missing} message(s) neither returned nor queued; the consumer was {}inside a get \
             that had decoded its message",
            if in_window { "" } else { "not " }
        );
        taken_in_window += missing;
    }
    let mut left = 0;
    while q.get_nowait().is_ok() {
        left += 1;
    }
    eprintln!(
        "{KILLS} kills: sent {sent}, returned by a get {returned}, left {left}, taken by a kill inside get after \
         decoding {taken_in_window}"
    );
    assert_eq!(returned + left + taken_in_window, sent, "returned {returned}, left {left}");
}
