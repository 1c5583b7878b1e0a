//! A queue's ring lives in memory every process using it maps, a task's included. A task
//! whose C library scribbles over memory can overwrite the ring's positions: the next
//! `get` or `put` elsewhere read a record outside the ring and panicked (the process
//! that called it, the parent included, paid for the task's crash). Now such a queue is
//! an error naming it (`QueueError::Io`, "corrupt queue"), in every process.

use std::os::unix::fs::FileExt;
use std::time::Duration;

use multiproc::{Process, Queue, QueueError};

multiproc::test_init!();

/// Where this process maps the queue's shared memory.
fn queue_address() -> u64 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps.lines().find(|l| l.contains("multiproc-Queue")).expect("the queue is mapped here");
    u64::from_str_radix(line.split('-').next().unwrap(), 16).unwrap()
}

/// Puts one message, then overwrites the ring's `head` or `tail` word as a stray write
/// would: with a position far outside the ring (the word's upper half), or, with
/// `count_only`, with a message count past the one message there (its lower half).
fn put_then_scribble((q, word_at, count_only): (Queue<u64>, u64, bool)) {
    q.put(7).unwrap();
    // The put is in the ring (its feeder thread has written it) before the scribble.
    q.close();
    q.join_thread();
    let mem = std::fs::OpenOptions::new().read(true).write(true).open("/proc/self/mem").unwrap();
    let at = queue_address() + word_at;
    let mut head = [0u8; 8];
    mem.read_exact_at(&mut head, at).unwrap();
    let word = u64::from_le_bytes(head);
    let scribbled = if count_only {
        (word & !0xffff_ffff) | ((word as u32).wrapping_add(6) as u64)
    } else {
        (word & 0xffff_ffff) | (0x7fff_fff8u64 << 32)
    };
    mem.write_all_at(&scribbled.to_le_bytes(), at).unwrap();
}

fn corrupt(r: &Result<impl std::fmt::Debug, QueueError>) -> bool {
    matches!(r, Err(QueueError::Io(e)) if e.to_string().contains("corrupt queue"))
}

/// The ring's `head` (consumers) and `tail` (producers) words, as `queue/ring.rs` lays
/// them out.
const HEAD_AT: u64 = 256;
const TAIL_AT: u64 = 192;

#[test]
fn a_scribbled_head_is_an_error_not_a_panic() {
    let q = Queue::<u64>::new().unwrap();
    let mut p = Process::new(put_then_scribble, (q.clone(), HEAD_AT, false));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    let got = q.get_timeout(Duration::from_secs(60));
    assert!(corrupt(&got), "get: {got:?}");
    let put = q.put_timeout(8, Duration::from_secs(60));
    assert!(corrupt(&put), "put: {put:?}");
}

#[test]
fn a_scribbled_tail_is_an_error_not_a_panic() {
    let q = Queue::<u64>::new().unwrap();
    let mut p = Process::new(put_then_scribble, (q.clone(), TAIL_AT, false));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    let put = q.put_timeout(8, Duration::from_secs(60));
    assert!(corrupt(&put), "put: {put:?}");
    let got = q.get_timeout(Duration::from_secs(60));
    assert!(corrupt(&got), "get: {got:?}");
}

#[test]
fn a_scribbled_message_count_is_an_error_not_a_queue_full_for_ever() {
    // A bounded queue whose head says more messages were taken than were ever put: the
    // count of messages in it wraps past any that fit, and a blocking put waited for room
    // for ever.
    let q = Queue::<u64>::bounded(4).unwrap();
    let mut p = Process::new(put_then_scribble, (q.clone(), HEAD_AT, true));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    let put = q.put_timeout(8, Duration::from_secs(60));
    assert!(corrupt(&put), "put: {put:?}");
    let got = q.get_timeout(Duration::from_secs(60));
    assert!(corrupt(&got), "get: {got:?}");
}
