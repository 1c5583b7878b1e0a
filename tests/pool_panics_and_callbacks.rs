//! A panicking task is an error at `get` and its worker survives; callbacks run in the
//! parent; a panicking callback does not stop the pool.

use std::sync::mpsc;

use multiproc::{Pool, TaskError, TaskOptions};

multiproc::test_init!();

fn picky(x: u64) -> u64 {
    if x == 3 {
        panic!("three is right out");
    }
    x * 2
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

#[test]
fn a_panic_comes_back_with_message_and_location_and_the_worker_survives() {
    let pool = Pool::new(1).unwrap();
    let before = pool.apply(pid, ()).unwrap();
    let h = pool.apply_async(picky, 3);
    h.wait();
    assert_eq!(h.successful(), Some(false));
    match h.get() {
        Err(TaskError::Panicked { task, message, location, .. }) => {
            assert!(task.contains("picky"), "{task}");
            assert_eq!(message, "three is right out");
            assert!(location.contains("pool_panics_and_callbacks.rs"), "{location}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(pid, ()).unwrap(), before, "the same worker goes on");
    let s = pool.stats();
    assert_eq!(s.tasks_panicked, 1);
    assert_eq!(s.workers_died, 0);
}

#[test]
fn map_returns_the_first_error_and_map_results_keeps_the_rest() {
    let pool = Pool::new(2).unwrap();
    let e = pool.map(picky, 0..10).unwrap_err();
    assert!(matches!(e, TaskError::Panicked { .. }));
    assert!(e.to_string().contains("three is right out"), "{e}");
    let all = pool.map_results(picky, 0..10);
    for (i, r) in all.iter().enumerate() {
        if i == 3 {
            assert!(r.is_err());
        } else {
            assert_eq!(*r, Ok(i as u64 * 2));
        }
    }
    let from_imap: Vec<_> = pool.imap(picky, 0..6).collect();
    assert!(from_imap[3].is_err() && from_imap[5] == Ok(10));
}

#[test]
fn a_failure_inside_a_chunk_keeps_its_place_among_the_values() {
    use multiproc::{Chunksize, MapOptions};
    let pool = Pool::new(2).unwrap();
    // One chunk of 8: item 3 fails between values of the same result chunk.
    let opts = MapOptions::new().chunksize(Chunksize::Fixed(8));
    let m = pool.map_async_with(picky, 0..8, &opts);
    m.wait();
    assert_eq!(m.successful(), Some(false));
    let all = m.get_all();
    assert_eq!(all.len(), 8);
    assert!(matches!(all[3], Err(TaskError::Panicked { .. })));
    assert_eq!(all.iter().filter_map(|r| r.as_ref().ok()).copied().collect::<Vec<_>>(), [0, 2, 4, 8, 10, 12, 14]);
    let ok = pool.map_async_with(picky, 4..12, &opts);
    ok.wait();
    assert_eq!(ok.successful(), Some(true));
    assert_eq!(ok.get().unwrap(), [8, 10, 12, 14, 16, 18, 20, 22]);
    assert_eq!(pool.stats().tasks_panicked, 1);
}

#[test]
fn callbacks_and_error_callbacks_run_in_the_parent() {
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = mpsc::channel::<(u32, Result<u64, String>)>();
    let mut handles = Vec::new();
    for i in 0..6 {
        let (ok, err) = (tx.clone(), tx.clone());
        let opts = TaskOptions::new()
            .callback(move |v: &u64| ok.send((std::process::id(), Ok(*v))).unwrap())
            .error_callback(move |e: &TaskError| err.send((std::process::id(), Err(e.to_string()))).unwrap());
        handles.push(pool.apply_async_with(picky, i, opts));
    }
    drop(tx);
    for h in handles {
        h.wait();
    }
    let mut got: Vec<(u32, Result<u64, String>)> = rx.iter().collect();
    assert_eq!(got.len(), 6);
    assert!(got.iter().all(|(p, _)| *p == std::process::id()), "callbacks run in the parent");
    got.sort_by_key(|(_, r)| match r {
        Ok(v) => *v,
        Err(_) => u64::MAX,
    });
    assert_eq!(got.iter().filter(|(_, r)| r.is_ok()).count(), 5);
    assert!(got[5].1.as_ref().unwrap_err().contains("three is right out"));
}

#[test]
fn a_callback_runs_before_the_result_is_ready() {
    let pool = Pool::new(1).unwrap();
    let (tx, rx) = mpsc::channel();
    let h = pool.apply_async_with(picky, 1, TaskOptions::new().callback(move |v: &u64| tx.send(*v).unwrap()));
    h.wait();
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(h.get(), Ok(2));
}

#[test]
fn a_panicking_callback_is_reported_and_the_pool_goes_on() {
    let pool = Pool::new(1).unwrap();
    let h = pool.apply_async_with(picky, 1, TaskOptions::new().callback(|_: &u64| panic!("callback bug")));
    assert_eq!(h.get(), Ok(2), "the value stands");
    assert_eq!(pool.apply(picky, 2), Ok(4));
    assert_eq!(pool.map(picky, 0..3), Ok(vec![0, 2, 4]));
    assert_eq!(pool.stats().callback_panics, 1);
}
