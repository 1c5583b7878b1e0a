//! A dying, hanging or bloated worker costs one task, never the pool.
//!
//! Some tasks segfault (a real invalid write), abort, hang past their timeout or leak
//! past the memory limit; the others run normally. Each task's outcome is printed, then
//! the pool's statistics. Python's `Pool.map` would hang forever at the first death.
//!
//! Only the task that hangs carries a timeout, so what this prints does not depend on how
//! fast the machine is: a slow first panic (a backtrace being resolved) or a slow 200 MiB
//! allocation on a loaded machine still ends as documented.
//!
//! Run with `cargo run --example crash_recovery`.

use std::time::Duration;

use multiproc::{Pool, TaskError, TaskOptions};

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
enum Job {
    Fine(u64),
    Segfault,
    Abort,
    Hang,
    Leak,
    Panic,
}

// A real SIGSEGV (not a signal sent) needs an invalid write: the one `unsafe` of this file.
#[allow(unsafe_code)]
fn run(job: Job) -> u64 {
    match job {
        Job::Fine(x) => x * x,
        Job::Segfault => {
            // SAFETY: deliberately invalid: this example shows a worker killed by a real
            // SIGSEGV; a dangling pointer (address 8) is never mapped, so the write faults at once.
            unsafe { std::ptr::write_volatile(std::ptr::dangling_mut::<u64>(), 1) };
            0
        }
        Job::Abort => std::process::abort(),
        Job::Hang => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        Job::Leak => {
            // 200 MiB, touched and leaked, as a leaking library would.
            let v = vec![7u8; 200 << 20];
            let sum = v.iter().step_by(4096).map(|&b| b as u64).sum();
            std::mem::forget(v);
            sum
        }
        Job::Panic => panic!("a bug in this task"),
    }
}

fn describe(r: &Result<u64, TaskError>) -> String {
    match r {
        Ok(v) => format!("ok: {v}"),
        Err(e) => format!("failed: {e}"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let pool = Pool::builder().processes(2).max_memory_per_child(100 << 20).build()?;
    let jobs = [
        Job::Fine(1),
        Job::Segfault,
        Job::Fine(2),
        Job::Abort,
        Job::Fine(3),
        Job::Hang,
        Job::Fine(4),
        Job::Leak,
        Job::Panic,
        Job::Fine(5),
    ];
    // One handle per job; the hanging one alone gets a timeout (the others never need one).
    let handles: Vec<_> = jobs
        .iter()
        .map(|&job| {
            let options = match job {
                Job::Hang => TaskOptions::new().timeout(Duration::from_millis(500)),
                _ => TaskOptions::new(),
            };
            pool.apply_async_with(run, job, options)
        })
        .collect();
    let results: Vec<Result<u64, TaskError>> = handles.into_iter().map(|h| h.get()).collect();
    for (job, r) in jobs.iter().zip(&results) {
        println!("{:<10} -> {}", format!("{job:?}"), describe(r));
    }
    println!("a new task after all that: {}", describe(&pool.apply(run, Job::Fine(6))));
    pool.close();
    pool.join()?;
    let s = pool.stats();
    println!(
        "stats: workers started {}, died {} {:?}, killed for timeout {}, recycled for memory {}",
        s.workers_started, s.workers_died, s.died_by_signal, s.workers_killed_for_timeout, s.recycled_memory
    );
    println!(
        "       tasks done {}, panicked {}, worker died {}, timed out {}, failed in all {}",
        s.tasks_done,
        s.tasks_panicked,
        s.tasks_worker_died,
        s.tasks_timed_out,
        s.tasks_failed()
    );
    Ok(())
}
