//! `isolated` / `Isolated`: one call in a fresh process, with a pool task's errors: the
//! value, a panic with its message, a death with its signal, a timeout, an address-space
//! limit, a process that cannot start; `start` gives a typed handle to join, await or
//! cancel, and dropping it leaves no process behind.

use std::time::Duration;

use multiproc::{Isolated, TaskError, isolated};

mod common;

multiproc::test_init!();

fn pid_and_double(x: u64) -> (u32, u64) {
    (std::process::id(), x * 2)
}

fn panics(what: String) -> u8 {
    panic!("{what}")
}

fn killed(_: ()) -> u8 {
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL).unwrap();
    unreachable!("SIGKILL ends the process")
}

fn hangs(_: ()) -> u8 {
    loop {
        std::thread::park();
    }
}

fn allocates(bytes: usize) -> usize {
    let v = vec![1u8; bytes];
    v.iter().map(|&b| b as usize).sum()
}

#[test]
fn the_value_comes_back_from_a_fresh_process_each_time() {
    let (pid_a, a) = isolated(pid_and_double, 21).unwrap();
    let (pid_b, b) = isolated(pid_and_double, 1).unwrap();
    assert_eq!((a, b), (42, 2));
    assert_ne!(pid_a, std::process::id());
    assert_ne!(pid_a, pid_b, "each call has a process of its own");
}

#[test]
fn a_panic_is_panicked_with_its_message() {
    match isolated(panics, "no luck".to_string()) {
        Err(TaskError::Panicked { message, .. }) => assert_eq!(message, "no luck"),
        other => panic!("expected Panicked, got {other:?}"),
    }
}

#[test]
fn a_death_is_worker_died_with_its_signal() {
    match isolated(killed, ()) {
        Err(TaskError::WorkerDied { signal, .. }) => assert_eq!(signal, Some(libc::SIGKILL)),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
}

#[test]
fn a_call_past_its_timeout_is_killed() {
    let r = Isolated::new(hangs, ()).timeout(Duration::from_millis(50)).call();
    assert!(matches!(r, Err(TaskError::Timeout { timeout, .. }) if timeout == Duration::from_millis(50)), "{r:?}");
}

#[test]
fn an_address_space_limit_ends_the_call_with_a_hint() {
    let limit = 2u64 << 30;
    let ok = Isolated::new(allocates, 1 << 20).max_address_space(limit).call();
    assert_eq!(ok.unwrap(), 1 << 20);
    match Isolated::new(allocates, 8 << 30).max_address_space(limit).call() {
        Err(TaskError::WorkerDied { hint, .. }) => assert!(hint.unwrap().contains("address-space")),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
}

#[test]
fn a_process_that_cannot_start_is_pool_broken_with_the_reason() {
    let r = Isolated::new(pid_and_double, 1).executable("/nonexistent/multiproc-worker").call();
    match r {
        Err(TaskError::PoolBroken { reason, .. }) => assert!(reason.contains("did not start"), "{reason}"),
        other => panic!("expected PoolBroken, got {other:?}"),
    }
}

#[test]
fn a_started_call_is_joined_with_its_value_from_the_process_named() {
    let running = Isolated::new(pid_and_double, 4).start().unwrap();
    let pid = running.pid();
    assert!(pid != 0 && pid != std::process::id());
    assert_eq!(running.join().unwrap(), (pid, 8));
    common::assert_gone(&[pid]);
}

#[test]
fn a_started_call_can_be_awaited() {
    let mut running = std::pin::pin!(Isolated::new(pid_and_double, 5).start().unwrap());
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let outcome = loop {
        if let std::task::Poll::Ready(v) = running.as_mut().poll(&mut cx) {
            break v;
        }
        std::thread::yield_now();
    };
    assert_eq!(outcome.unwrap().1, 10);
}

#[test]
fn cancelling_or_dropping_a_started_call_ends_its_process() {
    let cancelled = Isolated::new(hangs, ()).start().unwrap();
    let pid = cancelled.pid();
    assert!(cancelled.cancel());
    assert!(matches!(cancelled.join(), Err(TaskError::Cancelled { .. })));
    common::assert_gone(&[pid]);
    let dropped = Isolated::new(hangs, ()).start().unwrap();
    let pid = dropped.pid();
    assert!(!dropped.is_finished());
    drop(dropped);
    common::assert_gone(&[pid]);
}
