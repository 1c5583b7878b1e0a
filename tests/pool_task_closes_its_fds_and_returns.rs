//! A task that closes every descriptor of its worker (3 and up) and returns: its worker
//! can no longer send the result, and ends. The death is charged to that task, with the
//! cause, so the item settles once as `WorkerDied` (after its retries, if any) instead of
//! being re-run forever (finding 1 of the accounting issue: about 580 workers started and
//! lost per second, and `get` never returned). When the worker had finished several items
//! whose results it could not send, the death cannot tell which one closed the socket:
//! they run again one at a time, and the next death names the culprit for sure.

use multiproc::{Pool, TaskError};

mod common;
use common::assert_gone;

multiproc::test_init!();

const BAD: u64 = 3;

/// Item `BAD` closes every descriptor from 3 to 1023 of its worker, then returns.
// Closing descriptors this process did not open is the fault under test; no safe API
// closes a descriptor by number.
#[allow(unsafe_code)]
fn close_fds_then_return(x: u64) -> u64 {
    if x == BAD {
        for fd in 3..1024 {
            // SAFETY: the task owns its worker process while it runs; nothing else in this
            // single-threaded worker uses these descriptors until the task returns, and the
            // worker only learns afterwards that its socket is gone (which is the point).
            let _ = unsafe { libc::close(fd) };
        }
    }
    x * 10
}

fn check(results: &[Result<u64, TaskError>], retries: u32) {
    assert_eq!(results.len(), 8);
    for (i, r) in results.iter().enumerate() {
        if i as u64 == BAD {
            match r {
                Err(TaskError::WorkerDied { attempts, hint, .. }) => {
                    assert_eq!(attempts.len() as u32, retries + 1, "one death per attempt: {r:?}");
                    let hint = hint.as_deref().unwrap_or_default();
                    assert!(hint.contains("connection to the pool"), "the cause is named: {hint}");
                }
                other => panic!("item {BAD}: {other:?}"),
            }
        } else {
            assert_eq!(r.as_ref().unwrap(), &(i as u64 * 10), "item {i}");
        }
    }
}

fn run(api: &str, retries: u32) {
    let pool = Pool::builder().processes(2).retries(retries).build().unwrap();
    let results: Vec<_> = match api {
        "apply_async" => {
            let hs: Vec<_> = (0..8).map(|i| pool.apply_async(close_fds_then_return, i)).collect();
            hs.into_iter().map(|h| h.get()).collect()
        }
        "apply" => (0..8).map(|i| pool.apply(close_fds_then_return, i)).collect(),
        "map" => pool.map_results(close_fds_then_return, 0..8u64),
        "imap" => pool.imap(close_fds_then_return, 0..8u64).collect(),
        _ => unreachable!(),
    };
    check(&results, retries);
    assert_eq!(pool.apply(close_fds_then_return, 5).unwrap(), 50, "the pool goes on after {api}");
    let stats = pool.stats();
    // One death per attempt, plus at most one when the worker had finished several items
    // whose results it could not send (they then run again one at a time): no storm.
    let attempts = u64::from(retries) + 1;
    assert!((attempts..=attempts + 1).contains(&stats.workers_died), "deaths bounded: {stats:?}");
    assert_eq!(stats.tasks_worker_died, 1);
    let mut pids = stats.worker_pids.clone();
    pool.close();
    pool.join().unwrap();
    pids.extend(pool.stats().worker_pids);
    assert_gone(&pids);
}

#[test]
fn apply_async() {
    run("apply_async", 0);
}

#[test]
fn apply() {
    run("apply", 0);
}

#[test]
fn map() {
    run("map", 0);
}

#[test]
fn imap() {
    run("imap", 0);
}

#[test]
fn retries_are_bounded_too() {
    run("apply_async", 2);
    run("map", 1);
}

/// Item 0 closes its worker's descriptors and returns; item 1, in the same chunk, then
/// stops itself (SIGSTOP) until its timeout. The driver sees the closed socket while item
/// 1 runs and kills the worker: either item may have closed the socket, so neither is
/// charged for that death; each runs again alone and ends with its own cause.
#[test]
fn the_item_running_when_a_closed_socket_is_noticed_is_not_blamed_for_it() {
    // Closing descriptors by number is the fault under test (see `close_fds_then_return`).
    #[allow(unsafe_code)]
    fn close_or_stop(x: u64) -> u64 {
        match x {
            0 => {
                for fd in 3..1024 {
                    // SAFETY: as in `close_fds_then_return`.
                    let _ = unsafe { libc::close(fd) };
                }
            }
            1 => {
                let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
            }
            _ => {}
        }
        x
    }
    let pool = Pool::builder().processes(1).timeout(std::time::Duration::from_secs(3)).build().unwrap();
    let opts = multiproc::MapOptions::new().chunksize(multiproc::Chunksize::Fixed(3));
    let results = pool.map_async_with(close_or_stop, 0..3u64, &opts).get_all();
    match &results[0] {
        Err(TaskError::WorkerDied { hint: Some(h), .. }) => assert!(h.contains("connection to the pool"), "{h}"),
        other => panic!("item 0: {other:?}"),
    }
    assert!(matches!(results[1], Err(TaskError::Timeout { .. })), "item 1: {:?}", results[1]);
    assert_eq!(results[2], Ok(2));
}

/// Through `apply` the caller reads the result itself and sees the socket end while the
/// task still runs (here it lingers 300 ms after closing it). The worker is not killed
/// for that: it tries to send, says why it cannot in its last words, and exits, so the
/// cause is named (CI once saw an empty hint when the worker was killed on sight).
#[test]
fn apply_names_the_cause_when_the_task_lingers_after_closing_its_socket() {
    // Closing descriptors by number is the fault under test (see `close_fds_then_return`).
    #[allow(unsafe_code)]
    fn close_then_linger(x: u64) -> u64 {
        for fd in 3..1024 {
            // SAFETY: as in `close_fds_then_return`.
            let _ = unsafe { libc::close(fd) };
        }
        // The fault's shape, not a wait: the caller must see the end of the socket first.
        std::thread::sleep(std::time::Duration::from_millis(300));
        x
    }
    let pool = Pool::new(1).unwrap();
    // Once a worker is parked, `apply` takes the caller's express path.
    assert_eq!(pool.apply(close_fds_then_return, 4).unwrap(), 40);
    match pool.apply(close_then_linger, 1) {
        Err(TaskError::WorkerDied { hint: Some(h), .. }) => assert!(h.contains("connection to the pool"), "{h}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(close_fds_then_return, 5).unwrap(), 50, "the pool goes on");
    let pids = pool.stats().worker_pids;
    pool.close();
    pool.join().unwrap();
    assert_gone(&pids);
}
