//! A consumer SIGKILLed inside `get` while a producer waits for room must not take a
//! message with it. Each round, a producer thread waits in `put` on a full queue; a
//! consumer is let go, and the producer kills it the moment its `put` returns (the
//! consumer has made room then, but its `get` may not have returned). Every message put
//! must either have been returned by some consumer's `get` or still be in the queue
//! (but for the window between `get`'s commit and its return, see the assertion).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use multiproc::{Event, Process, Queue, RawValue};

multiproc::test_init!();

/// Once let go, takes messages forever, recording (as `value + 1`) the first it got and
/// one past the last, right after each `get` returns.
fn consume((q, go, first, next): (Queue<u64>, Event, RawValue<u64>, RawValue<u64>)) {
    go.wait().unwrap();
    loop {
        let v = q.get().unwrap();
        if first.load() == 0 {
            first.store(v + 1);
        }
        next.store(v + 1);
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
    let q = Queue::<u64>::bounded(2).unwrap();
    let (mut sent, mut returned, mut lost) = (0u64, 0u64, 0u64);
    let mut lost_in = Vec::new();
    for round in 0..KILLS {
        while !q.full() {
            q.put(sent).unwrap();
            sent += 1;
        }
        let go = Event::new().unwrap();
        let (first, next) = (RawValue::new(0u64).unwrap(), RawValue::new(0u64).unwrap());
        let mut consumer = Process::new(consume, (q.clone(), go.clone(), first.clone(), next.clone()));
        consumer.start().unwrap();
        std::thread::scope(|s| {
            let (tid_tx, tid_rx) = mpsc::channel();
            let q = &q;
            let pid = rustix::process::Pid::from_raw(consumer.pid().unwrap() as i32).unwrap();
            s.spawn(move || {
                tid_tx.send(rustix::thread::gettid().as_raw_nonzero().get()).unwrap();
                q.put(sent).unwrap();
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
        returned += if first.load() == 0 { 0 } else { next.load() - first.load() + 1 };
        // Whatever no consumer returned must still be queued (the next consumer takes it).
        let missing = sent - returned - q.qsize() as u64;
        if missing > lost {
            lost_in.push(round);
            lost = missing;
        }
    }
    let mut left = 0;
    while q.get_nowait().is_ok() {
        left += 1;
    }
    eprintln!(
        "{KILLS} kills: sent {sent}, returned by a get {returned}, left {left}, kills that lost one: {lost_in:?}"
    );
    // A kill that lands after `get` committed and before the consumer recorded the value
    // (a few instructions, in any queue) takes that one message with it: that window is
    // the consumer's, not the queue's. One such kill in 40 is tolerated; the bug this
    // test was written for lost a message in 3 to 8 of 40 kills.
    assert!(lost_in.len() <= 1, "messages lost in {} of {KILLS} kills", lost_in.len());
    let (sent, got) = (sent as i64, (returned + left) as i64);
    assert!(got <= sent && sent - got <= 1, "sent {sent}, returned {returned}, left {left}");
}
