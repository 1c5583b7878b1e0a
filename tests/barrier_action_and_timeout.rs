//! A `Barrier`'s action (Python's `Barrier(parties, action=...)`) runs once per round, in
//! the last process to arrive, before any party goes on; a panicking action breaks the
//! barrier; a default timeout breaks a wait that is never met.

use std::sync::OnceLock;
use std::time::Duration;

use multiproc::{Barrier, Process, Queue, SyncError, Value};

multiproc::test_init!();

/// The round counter the action bumps, set by each process before it waits.
static ROUNDS: OnceLock<Value<u32>> = OnceLock::new();

fn count_round() {
    let rounds = ROUNDS.get().expect("ROUNDS set before the wait");
    *rounds.lock().unwrap() += 1;
}

/// Waits twice; after each wait, reports the counter, which the action bumped first.
fn party((b, rounds, out): (Barrier, Value<u32>, Queue<u32>)) {
    ROUNDS.set(rounds.clone()).unwrap();
    for _ in 0..2 {
        b.wait().unwrap();
        out.put(rounds.get().unwrap()).unwrap();
    }
}

#[test]
fn the_action_runs_once_per_round_before_any_party_goes_on() {
    let rounds = Value::new(0u32).unwrap();
    let b = Barrier::with_options(3, Some(count_round), None).unwrap();
    let out = Queue::new().unwrap();
    let mut kids: Vec<Process> =
        (0..2).map(|_| Process::new(party, (b.clone(), rounds.clone(), out.clone()))).collect();
    for k in &mut kids {
        k.start().unwrap();
    }
    party((b.clone(), rounds.clone(), out.clone()));
    let mut seen: Vec<u32> = (0..6).map(|_| out.get().unwrap()).collect();
    seen.sort();
    // Each party saw round 1's action after its first wait; the second round's needs
    // every party's second arrival, so no one saw 2 until all had seen 1.
    assert_eq!(seen, [1, 1, 1, 2, 2, 2]);
    for k in &mut kids {
        k.join().unwrap();
        assert_eq!(k.exitcode(), Some(0));
    }
    assert_eq!(rounds.get().unwrap(), 2);
}

fn refuse() {
    panic!("the action refuses");
}

fn wait_and_report((b, out): (Barrier, Queue<String>)) {
    let r = std::panic::catch_unwind(|| b.wait());
    out.put(match r {
        Ok(Ok(_)) => "passed".into(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "panicked".into(),
    })
    .unwrap();
}

#[test]
fn a_panicking_action_breaks_the_barrier_for_the_others() {
    let b = Barrier::with_options(2, Some(refuse), None).unwrap();
    let out = Queue::new().unwrap();
    let mut p = Process::new(wait_and_report, (b.clone(), out.clone()));
    p.start().unwrap();
    wait_and_report((b.clone(), out.clone()));
    let mut got = [out.get().unwrap(), out.get().unwrap()];
    got.sort();
    assert_eq!(got, ["panicked".to_string(), SyncError::BrokenBarrier.to_string()]);
    assert!(b.broken());
    p.join().unwrap();
}

fn wait_alone((b, out): (Barrier, Queue<String>)) {
    out.put(format!("{:?}", b.wait().map_err(|e| e.to_string()))).unwrap();
}

#[test]
fn the_default_timeout_breaks_a_wait_that_is_never_met() {
    let b = Barrier::with_options(2, None, Some(Duration::from_millis(20))).unwrap();
    assert_eq!(b.timeout(), Some(Duration::from_millis(20)));
    let out = Queue::new().unwrap();
    let mut p = Process::new(wait_alone, (b.clone(), out.clone()));
    p.start().unwrap();
    assert_eq!(out.get().unwrap(), format!("{:?}", Err::<u32, _>(SyncError::BrokenBarrier.to_string())));
    p.join().unwrap();
    assert!(b.broken());
}
