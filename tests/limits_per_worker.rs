//! `PoolBuilder::limits`: a CPU time limit ends a spinning task's worker, the task fails
//! naming the limit, and the pool goes on with a fresh worker; the other limits are in
//! force in the workers.

use std::time::Duration;

use multiproc::{Limits, Pool, TaskError};

multiproc::test_init!();

fn spin(_: ()) -> u64 {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn double(x: u64) -> u64 {
    x * 2
}

fn settings(_: ()) -> (i32, usize, Option<u64>) {
    let nice = rustix::process::getpriority_process(None).unwrap();
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    (nice, multiproc::cpu_count(), nofile)
}

#[test]
fn a_cpu_time_limit_fails_the_task_naming_it_and_the_pool_goes_on() {
    let pool = Pool::builder().processes(1).limits(Limits::new().cpu_time(Duration::from_secs(1))).build().unwrap();
    let err = pool.apply(spin, ()).unwrap_err();
    assert!(matches!(err, TaskError::WorkerDied { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("CPU time limit (RLIMIT_CPU) after 1 s"), "{msg}");
    assert_eq!(pool.apply(double, 21).unwrap(), 42);
    assert_eq!(pool.stats().died_by_signal.get(&24), Some(&1));
}

#[test]
fn niceness_affinity_and_open_files_are_set_in_every_worker() {
    let limits = Limits::new().nice(5).cpu_affinity([0]).open_files(256);
    let pool = Pool::builder().processes(2).limits(limits).build().unwrap();
    for got in pool.map(settings, vec![(); 4]).unwrap() {
        assert_eq!(got, (5, 1, Some(256)));
    }
}

#[test]
fn a_bad_limit_fails_build_naming_it() {
    let err = Pool::builder().processes(1).limits(Limits::new().cpu_affinity([])).build().unwrap_err();
    assert!(err.to_string().contains("cpu_affinity"), "{err}");
}

fn cpus(_: ()) -> usize {
    multiproc::cpu_count()
}

#[test]
fn one_cpu_each_pins_every_worker_to_one_cpu() {
    let pool = Pool::builder().processes(2).limits(Limits::new().one_cpu_each([0])).build().unwrap();
    assert_eq!(pool.map(cpus, vec![(); 4]).unwrap(), [1, 1, 1, 1]);
}
