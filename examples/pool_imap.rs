//! Seed 001-D: `imap` yields in input order, `imap_unordered` in completion order; the
//! tasks sleep 1, 3 and 5 units (100 ms here) on a pool of `cpu_count()` workers.
//!
//! Run with `cargo run --example pool_imap`.

use std::time::Duration;

use multiproc::Pool;

const UNIT: Duration = Duration::from_millis(100);

fn do_something(n: u64) -> u64 {
    std::thread::sleep(UNIT * n as u32);
    println!("do something in sub_progress");
    n
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let pool = Pool::new(multiproc::cpu_count())?;

    // 进入顺序
    for result in pool.imap(do_something, [1, 3, 5]) {
        println!("do something in {}s", result?);
    }

    // 完成顺序
    for result in pool.imap_unordered(do_something, [1, 3, 5]) {
        println!("do something in {}s", result?);
    }

    pool.close();
    pool.join()?;
    Ok(())
}
