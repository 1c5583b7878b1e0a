//! `apply` on an idle pool runs through the express lane: the calling thread talks to a
//! parked worker itself. Everything that can go wrong there must end as it does through
//! the driver: a death names its signal and costs that task alone, a timeout kills the
//! worker, `terminate` ends a running `apply`, and the driver's count of what each
//! worker ran stays right, so a later crash in a chunk still blames the right item.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use multiproc::{Bytes, Chunksize, Fd, MapOptions, Pool, TaskError};

multiproc::test_init!();

fn double(x: u64) -> u64 {
    x * 2
}

fn kill_self_at(arg: (u64, u64)) -> u64 {
    if arg.0 == arg.1 {
        let me = rustix::process::getpid();
        let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
        std::thread::sleep(Duration::from_secs(60));
    }
    arg.0 * 10
}

// A real SIGSEGV (not a signal sent) needs an invalid write: the one `unsafe` of this file.
#[allow(unsafe_code)]
fn segfault(_: u64) -> u64 {
    // SAFETY: deliberately invalid (address 8, never mapped): the test needs a real SIGSEGV.
    unsafe { std::ptr::write_volatile(std::ptr::dangling_mut::<u64>(), 1) };
    0
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Says "started" on the socket at `path`, then blocks until the worker is killed.
fn announce_and_hang(path: String) -> u64 {
    let mut s = UnixStream::connect(path).expect("the test listens");
    s.write_all(b"started").expect("the test reads");
    std::thread::sleep(Duration::from_secs(600));
    0
}

fn big(n: usize) -> Bytes {
    Bytes::from(vec![7u8; n])
}

fn open_self(_: ()) -> Fd {
    Fd::new(std::fs::File::open("/proc/self/exe").expect("readable"))
}

#[test]
fn many_applies_are_counted_and_keep_their_workers() {
    let pool = Pool::new(2).unwrap();
    let before = pool.stats().worker_pids;
    for i in 0..500 {
        assert_eq!(pool.apply(double, i).unwrap(), i * 2);
    }
    let s = pool.stats();
    assert_eq!(s.tasks_done, 500);
    // No worker was replaced (the second may have come up during the applies).
    assert!(before.iter().all(|p| s.worker_pids.contains(p)), "{before:?} {s:?}");
    assert_eq!(s.workers_started, s.worker_pids.len() as u64, "{s:?}");
    assert_eq!((s.workers_died, s.tasks_failed()), (0, 0));
}

#[test]
fn a_killed_or_segfaulting_apply_names_its_signal_and_the_pool_goes_on() {
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.apply(double, 1).unwrap(), 2);
    match pool.apply(kill_self_at, (5, 5)) {
        Err(TaskError::WorkerDied { task, signal, attempts, .. }) => {
            assert!(task.contains("kill_self_at"), "{task}");
            assert_eq!(signal, Some(9));
            assert_eq!(attempts.len(), 1);
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    match pool.apply(segfault, 0) {
        Err(TaskError::WorkerDied { signal, .. }) => assert_eq!(signal, Some(11)),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(pool.apply(double, 21).unwrap(), 42);
    let s = pool.stats();
    assert_eq!((s.workers_died, s.tasks_worker_died, s.tasks_done), (2, 2, 2));
    assert_eq!(s.died_by_signal.get(&9), Some(&1));
    assert_eq!(s.died_by_signal.get(&11), Some(&1));
}

#[test]
fn after_many_applies_a_crash_in_a_chunk_still_blames_the_right_item() {
    // The worker counts every item it runs, express ones included; the driver must too.
    let pool = Pool::new(1).unwrap();
    for i in 0..37 {
        assert_eq!(pool.apply(double, i).unwrap(), i * 2);
    }
    let items: Vec<(u64, u64)> = (0..12).map(|i| (i, 6)).collect();
    let opts = MapOptions::new().chunksize(Chunksize::Fixed(4));
    let results = pool.map_async_with(kill_self_at, items, &opts).get_all();
    for (i, r) in results.iter().enumerate() {
        if i == 6 {
            assert!(matches!(r, Err(TaskError::WorkerDied { signal: Some(9), .. })), "{r:?}");
        } else {
            assert_eq!(r.as_ref().unwrap(), &(i as u64 * 10), "item {i}");
        }
    }
    // One death: the item was blamed the first time, not run again on a fresh worker.
    assert_eq!(pool.stats().workers_died, 1);
    assert_eq!(pool.apply(double, 4).unwrap(), 8);
}

#[test]
fn a_pool_timeout_kills_an_apply_and_a_fresh_worker_goes_on() {
    let pool = Pool::builder().processes(1).timeout(Duration::from_millis(100)).build().unwrap();
    assert_eq!(pool.apply(double, 1).unwrap(), 2);
    let old = pool.stats().worker_pids;
    match pool.apply(nap, 600_000) {
        Err(TaskError::Timeout { task, timeout, .. }) => {
            assert!(task.contains("nap"), "{task}");
            assert_eq!(timeout, Duration::from_millis(100));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(pool.apply(double, 2).unwrap(), 4);
    let s = pool.stats();
    assert_eq!((s.tasks_timed_out, s.workers_killed_for_timeout), (1, 1));
    assert_ne!(s.worker_pids, old);
}

#[test]
fn terminate_ends_an_apply_running_in_another_thread() {
    let dir = std::env::temp_dir().join(format!("multiproc-express-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("started.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.apply(double, 1).unwrap(), 2);
    std::thread::scope(|s| {
        let running = s.spawn(|| pool.apply(announce_and_hang, path.to_string_lossy().into_owned()));
        let (mut conn, _) = listener.accept().unwrap();
        let mut word = [0u8; 7];
        conn.read_exact(&mut word).unwrap();
        assert_eq!(&word, b"started");
        pool.terminate();
        let r = running.join().unwrap();
        assert!(matches!(r, Err(TaskError::Terminated { .. })), "{r:?}");
    });
    assert!(matches!(pool.apply(double, 1), Err(TaskError::Closed { .. })));
    assert_eq!(pool.stats().workers_alive, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_idle_worker_killed_from_outside_is_replaced_and_costs_nothing() {
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.apply(double, 1).unwrap(), 2);
    let pid = pool.stats().worker_pids[0];
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    );
    // Whether the driver or this apply finds the corpse first, the task runs elsewhere.
    assert_eq!(pool.apply(double, 5).unwrap(), 10);
    let s = pool.stats();
    assert_eq!((s.workers_died, s.tasks_failed()), (1, 0));
    assert_ne!(s.worker_pids, vec![pid]);
}

#[test]
fn large_results_and_descriptors_come_back_from_apply() {
    let pool = Pool::new(1).unwrap();
    let b = pool.apply(big, 3 << 20).unwrap();
    assert_eq!(b.len(), 3 << 20);
    assert!(b.iter().all(|&x| x == 7));
    let fd = pool.apply(open_self, ()).unwrap();
    let mut f = fd.into_file();
    let mut head = [0u8; 4];
    f.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"\x7fELF");
    assert_eq!(pool.apply(double, 3).unwrap(), 6);
}

#[test]
fn applies_from_many_threads_alongside_maps_lose_nothing() {
    let pool = Pool::new(2).unwrap();
    std::thread::scope(|s| {
        let appliers: Vec<_> = (0..4u64)
            .map(|t| {
                let pool = &pool;
                s.spawn(move || {
                    for i in 0..200 {
                        let x = t * 1000 + i;
                        assert_eq!(pool.apply(double, x).unwrap(), x * 2);
                    }
                })
            })
            .collect();
        for round in 0..20u64 {
            let out = pool.map(double, (0..100).map(|i| round * 100 + i)).unwrap();
            assert_eq!(out, (0..100).map(|i| (round * 100 + i) * 2).collect::<Vec<_>>());
        }
        for a in appliers {
            a.join().unwrap();
        }
    });
    let s = pool.stats();
    assert_eq!(s.tasks_done, 4 * 200 + 20 * 100);
    assert_eq!(s.tasks_failed(), 0);
    pool.close();
    pool.join().unwrap();
    assert_eq!(pool.stats().workers_alive, 0);
}
