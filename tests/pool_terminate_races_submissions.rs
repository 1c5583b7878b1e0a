//! `terminate`, `close` and `drop` racing submissions from other threads leave no
//! submission waiting: every handle settles, with its value or as `Terminated`/`Closed`.

use std::sync::Barrier;
use std::time::Duration;

use multiproc::{Pool, TaskError};

multiproc::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

/// Long enough that only a broken pool waits this long for an outcome (a hang guard,
/// never a measurement).
const PATIENCE: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
enum Stop {
    Terminate,
    Close,
}

fn race(stop: Stop, round: usize) {
    let pool = Pool::new(2).unwrap();
    let start = Barrier::new(3);
    let (applied, mapped) = std::thread::scope(|s| {
        let submitters: Vec<_> = (0..2u64)
            .map(|t| {
                let (pool, start) = (&pool, &start);
                s.spawn(move || {
                    start.wait();
                    let applied: Vec<_> = (0..300u64).map(|n| pool.apply_async(square, n + t)).collect();
                    let mapped: Vec<_> = (0..30u64).map(|n| pool.map_async(square, vec![n, n + t])).collect();
                    (applied, mapped)
                })
            })
            .collect();
        start.wait();
        std::thread::yield_now();
        match stop {
            Stop::Terminate => pool.terminate(),
            Stop::Close => pool.close(),
        }
        let (mut applied, mut mapped) = (Vec::new(), Vec::new());
        for t in submitters {
            let (a, m) = t.join().unwrap();
            applied.extend(a);
            mapped.extend(m);
        }
        (applied, mapped)
    });
    for h in applied {
        assert!(h.wait_timeout(PATIENCE), "round {round} ({stop:?}): an apply_async never settled");
        match h.get() {
            Ok(_) | Err(TaskError::Terminated { .. } | TaskError::Closed { .. }) => {}
            other => panic!("round {round} ({stop:?}): unexpected {other:?}"),
        }
    }
    for m in mapped {
        assert!(m.wait_timeout(PATIENCE), "round {round} ({stop:?}): a map_async never settled");
        for r in m.get_all() {
            match r {
                Ok(_) | Err(TaskError::Terminated { .. } | TaskError::Closed { .. }) => {}
                other => panic!("round {round} ({stop:?}): unexpected {other:?}"),
            }
        }
    }
    pool.join().unwrap();
}

#[test]
fn terminate_racing_submissions_settles_every_one() {
    for round in 0..10 {
        race(Stop::Terminate, round);
    }
}

#[test]
fn close_racing_submissions_settles_every_one() {
    for round in 0..10 {
        race(Stop::Close, round);
    }
}
