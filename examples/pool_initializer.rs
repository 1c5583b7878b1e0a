//! Seed 004-A/B: an initializer prints `Starting PoolWorker-N` in every worker; with
//! `max_tasks_per_child = 2` workers are replaced after two tasks, so more start.
//!
//! Each task sleeps 20 ms, standing for real work: with instant tasks the first fresh
//! worker can finish both remaining tasks before its siblings have started, and a ninth
//! worker replaces it (Python's count depends on the same race).
//!
//! Run with `cargo run --example pool_initializer`.

use multiproc::Pool;

fn do_calculation(data: u64) -> u64 {
    data * 2
}

fn do_calculation_in_a_worker(data: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(20));
    do_calculation(data)
}

fn start_process(_: ()) {
    println!("Starting {}", multiproc::current_process().name());
}

fn run(max_tasks_per_child: Option<u64>) -> Result<(), Box<dyn std::error::Error>> {
    let inputs: Vec<u64> = (0..10).collect();
    println!("Inputs  : {inputs:?}");
    let builtin_output: Vec<u64> = inputs.iter().copied().map(do_calculation).collect();
    println!("Build-In : {builtin_output:?}");
    let pool_size = multiproc::cpu_count() * 2;
    let mut builder = Pool::builder().processes(pool_size).initializer(start_process, ());
    if let Some(n) = max_tasks_per_child {
        builder = builder.max_tasks_per_child(n);
    }
    let pool = builder.build()?;
    let pool_outputs = pool.map(do_calculation_in_a_worker, inputs)?;
    pool.close();
    pool.join()?;
    println!("Pool  : {pool_outputs:?}");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    run(None)?;
    run(Some(2))
}
