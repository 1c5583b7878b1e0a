//! The crash matrix: each way for a worker to die × each API. The caller sees
//! `WorkerDied` for exactly the crashing item, every other result is right, the pool
//! runs new work, and no process is left once the pool is dropped.

use multiproc::{Pool, TaskError};

mod common;
use common::assert_gone;

multiproc::test_init!();

const CRASH_AT: u64 = 3;
const ITEMS: u64 = 8;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Death {
    Kill,
    Segfault,
    Abort,
    StackOverflow,
    Exit0,
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let buf = std::hint::black_box([depth; 64]);
    if buf[0] == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + buf[3]
}

// A real SIGSEGV (not a signal sent) needs an invalid write: the one `unsafe` of this file.
#[allow(unsafe_code)]
fn die(how: Death) {
    match how {
        Death::Kill => {
            let me = rustix::process::getpid();
            let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
        Death::Segfault => {
            // SAFETY: this write is deliberately invalid: the test needs a real SIGSEGV
            // (a dangling pointer: address 8, never mapped), and the process dies before anything else runs.
            unsafe { std::ptr::write_volatile(std::ptr::dangling_mut::<u64>(), 1) };
        }
        Death::Abort => std::process::abort(),
        Death::StackOverflow => {
            std::hint::black_box(recurse(0));
        }
        Death::Exit0 => std::process::exit(0),
    }
}

fn crashy(arg: (Death, u64)) -> u64 {
    if arg.1 == CRASH_AT {
        die(arg.0);
    }
    arg.1 * 10
}

fn crashy2(how: Death, x: u64) -> u64 {
    crashy((how, x))
}

fn ok(x: u64) -> u64 {
    x + 1
}

fn check_death(e: &TaskError, how: Death) {
    match e {
        TaskError::WorkerDied { task, pid, signal, exit_code, attempts, .. } => {
            assert!(task.contains("crashy"), "{task}");
            assert!(*pid > 0);
            assert_eq!(attempts.len(), 1);
            match how {
                Death::Kill => assert_eq!(*signal, Some(9), "{e}"),
                Death::Segfault => assert_eq!(*signal, Some(11), "{e}"),
                Death::Abort => assert_eq!(*signal, Some(6), "{e}"),
                Death::StackOverflow => assert!(matches!(signal, Some(6) | Some(11)), "{e}"),
                Death::Exit0 => assert_eq!((*signal, *exit_code), (None, Some(0)), "{e}"),
            }
        }
        other => panic!("expected WorkerDied for {how:?}, got {other:?}"),
    }
}

fn check_rest(results: &[Result<u64, TaskError>], how: Death) {
    assert_eq!(results.len() as u64, ITEMS);
    for (i, r) in results.iter().enumerate() {
        if i as u64 == CRASH_AT {
            check_death(r.as_ref().unwrap_err(), how);
        } else {
            assert_eq!(r.as_ref().unwrap(), &(i as u64 * 10), "item {i} with {how:?}");
        }
    }
}

fn run_api(how: Death, api: &str) {
    let pool = Pool::new(2).unwrap();
    let mut pids = pool.stats().worker_pids;
    let items: Vec<(Death, u64)> = (0..ITEMS).map(|i| (how, i)).collect();
    let results: Vec<Result<u64, TaskError>> = match api {
        "apply" => items.iter().map(|&a| pool.apply(crashy, a)).collect(),
        "apply_async" => {
            let hs: Vec<_> = items.iter().map(|&a| pool.apply_async(crashy, a)).collect();
            hs.into_iter().map(|h| h.get()).collect()
        }
        "map" => {
            let first = pool.map(crashy, items.clone()).unwrap_err();
            check_death(&first, how);
            pool.map_results(crashy, items)
        }
        "imap" => pool.imap(crashy, items).collect(),
        "imap_unordered" => {
            let mut v: Vec<(u64, Result<u64, TaskError>)> = Vec::new();
            for r in pool.imap_unordered(crashy, items) {
                let key = match &r {
                    Ok(x) => x / 10,
                    Err(_) => CRASH_AT,
                };
                v.push((key, r));
            }
            v.sort_by_key(|(k, _)| *k);
            v.into_iter().map(|(_, r)| r).collect()
        }
        "starmap" => {
            let first = pool.starmap(crashy2, items.clone()).unwrap_err();
            check_death(&first, how);
            pool.starmap_async(crashy2, items).get_all()
        }
        _ => unreachable!(),
    };
    check_rest(&results, how);
    for r in &results {
        if let Err(TaskError::WorkerDied { pid, .. }) = r {
            pids.push(*pid);
        }
    }
    assert_eq!(pool.apply(ok, 41).unwrap(), 42, "the pool runs new work after {how:?} in {api}");
    let stats = pool.stats();
    assert!(stats.workers_died >= 1, "{stats:?}");
    pids.extend(stats.worker_pids);
    drop(pool);
    assert_gone(&pids);
}

const APIS: [&str; 6] = ["apply", "apply_async", "map", "imap", "imap_unordered", "starmap"];

#[test]
fn sigkill() {
    for api in APIS {
        run_api(Death::Kill, api);
    }
}

#[test]
fn segfault() {
    for api in APIS {
        run_api(Death::Segfault, api);
    }
}

#[test]
fn abort() {
    for api in APIS {
        run_api(Death::Abort, api);
    }
}

#[test]
fn stack_overflow() {
    for api in APIS {
        run_api(Death::StackOverflow, api);
    }
}

#[test]
fn exit_zero_inside_a_task() {
    for api in APIS {
        run_api(Death::Exit0, api);
    }
}
