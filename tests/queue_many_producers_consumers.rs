//! Many producer and consumer processes on one queue: every message arrives exactly
//! once, and each producer's messages arrive in the order it put them.

use std::collections::HashMap;

use multiproc::{Process, Queue};

multiproc::test_init!();

const PER_PRODUCER: u32 = 2000;

fn produce((q, id): (Queue<(u32, u32)>, u32)) {
    for i in 0..PER_PRODUCER {
        q.put((id, i)).unwrap();
    }
}

/// A message: (producer id, its sequence number).
type Msg = (u32, u32);

/// Takes messages until it sees a stop marker, then reports what it took.
fn consume((q, out): (Queue<Msg>, Queue<Vec<Msg>>)) {
    let mut got = Vec::new();
    loop {
        let m = q.get().unwrap();
        if m.0 == u32::MAX {
            break;
        }
        got.push(m);
    }
    out.put(got).unwrap();
}

#[test]
fn three_producers_three_consumers_lose_and_duplicate_nothing() {
    let q = Queue::<(u32, u32)>::bounded(100).unwrap();
    let out = Queue::<Vec<(u32, u32)>>::new().unwrap();
    let mut procs = Vec::new();
    for id in 0..3 {
        let mut p = Process::new(produce, (q.clone(), id));
        p.start().unwrap();
        procs.push(p);
    }
    let mut consumers = Vec::new();
    for _ in 0..3 {
        let mut c = Process::new(consume, (q.clone(), out.clone()));
        c.start().unwrap();
        consumers.push(c);
    }
    for p in &procs {
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
    for _ in 0..3 {
        q.put((u32::MAX, 0)).unwrap();
    }
    let mut seen: HashMap<u32, Vec<u32>> = HashMap::new();
    for _ in 0..3 {
        let got = out.get().unwrap();
        // Per consumer, each producer's messages are in increasing order.
        let mut last: HashMap<u32, u32> = HashMap::new();
        for (id, i) in got {
            if let Some(prev) = last.insert(id, i) {
                assert!(prev < i, "producer {id}: {i} after {prev}");
            }
            seen.entry(id).or_default().push(i);
        }
    }
    for c in &consumers {
        c.join().unwrap();
    }
    for id in 0..3 {
        let mut v = seen.remove(&id).unwrap();
        v.sort();
        assert_eq!(v, (0..PER_PRODUCER).collect::<Vec<_>>(), "producer {id}");
    }
    assert!(q.empty());
}

fn produce_in_order((q, n): (Queue<u64>, u64)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

#[test]
fn one_producer_one_consumer_keeps_order_through_a_wrapping_ring() {
    // A small buffer so the ring wraps many times and the unbounded queue parks.
    let q = Queue::<u64>::with_buffer(0, 4096).unwrap();
    let n = 50_000;
    let mut p = Process::new(produce_in_order, (q.clone(), n));
    p.start().unwrap();
    for i in 0..n {
        assert_eq!(q.get().unwrap(), i);
    }
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}
