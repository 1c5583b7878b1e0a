//! A consumer killed in the middle of `get` (asleep, holding the consumers' lock) loses
//! nothing: the next consumer is handed the lock and every message.

use std::time::Duration;

use multiproc::{Event, Process, Queue};

multiproc::test_init!();

fn block_in_get((q, started): (Queue<u32>, Event)) {
    started.set();
    let v = q.get().unwrap();
    panic!("the killed consumer should never get a message, got {v}");
}

#[test]
fn killing_a_consumer_blocked_in_get_loses_no_message() {
    let q = Queue::<u32>::new().unwrap();
    let started = Event::new().unwrap();
    let mut victim = Process::new(block_in_get, (q.clone(), started.clone()));
    victim.start().unwrap();
    started.wait().unwrap();
    // Give it no message, so it goes to sleep inside get holding the consumers' lock
    // (the deterministic version of this, a thread dying with the lock, is a unit test).
    assert!(q.get_timeout(Duration::from_millis(50)).is_err());
    victim.kill().unwrap();
    victim.join().unwrap();
    assert_eq!(victim.exitcode(), Some(-9));
    for i in 0..100 {
        q.put(i).unwrap();
    }
    for i in 0..100 {
        assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), i);
    }
    assert!(q.empty());
}

fn eat_forever(q: Queue<u64>) {
    loop {
        let _ = q.get();
    }
}

#[test]
fn a_consumer_killed_while_busy_takes_at_most_what_it_received() {
    let q = Queue::<u64>::new().unwrap();
    let mut eater = Process::new(eat_forever, q.clone());
    eater.start().unwrap();
    let n = 20_000u64;
    for i in 0..n {
        q.put(i).unwrap();
    }
    eater.kill().unwrap();
    eater.join().unwrap();
    // Whatever the eater did not take is still here, in order, and the queue works.
    let mut rest = Vec::new();
    while let Ok(v) = q.get_nowait() {
        rest.push(v);
    }
    assert!(rest.windows(2).all(|w| w[0] + 1 == w[1]), "a gap in what is left");
    if let Some(&last) = rest.last() {
        assert_eq!(last, n - 1);
    }
    q.put(7).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), 7);
}
