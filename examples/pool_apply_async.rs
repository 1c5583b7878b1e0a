//! Seeds 000-A, 001-C, 003-I and 004-C: `apply_async` on a pool, then `close` and `join`.
//!
//! One second of the seeds is 100 ms here, so the whole run takes a few seconds.
//! Run with `cargo run --example pool_apply_async`.

use std::time::{Duration, Instant, SystemTime};

use multiproc::Pool;

const UNIT: Duration = Duration::from_millis(100);

/// A number in [0, 1) that differs between calls (the seeds use `random.random()`).
fn random(salt: u64) -> f64 {
    let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let mut x = t ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ std::process::id() as u64;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Seed 000-A's `worker(msg)`.
fn worker(msg: u64) {
    let t_start = Instant::now();
    println!("{msg}开始执行,进程号为{}", std::process::id());
    std::thread::sleep(UNIT.mul_f64(random(msg) * 2.0));
    println!("{msg} 执行完毕,耗时{:.2}", t_start.elapsed().as_secs_f64() / UNIT.as_secs_f64());
}

/// Seed 001-C's `do_something(n)`.
fn do_something(n: u64) -> u64 {
    std::thread::sleep(UNIT * n as u32);
    println!("do something in sub_progress");
    n
}

/// Seed 003-I's `work(n)`.
fn work(n: u64) -> u64 {
    std::thread::sleep(UNIT);
    n * n
}

/// Seed 004-C's `func(msg)`.
fn func(msg: String) -> String {
    for _ in 0..3 {
        println!("{msg}");
        std::thread::sleep(UNIT);
    }
    format!("done {msg}")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    // 000-A: Pool(3), ten fire-and-forget tasks.
    let po = Pool::new(3)?; // 定义一个进程池,最大进程数3
    for i in 0..10 {
        // 每次循环将会用空闲出来的子进程去调用目标
        po.apply_async(worker, i);
    }
    println!("----start----");
    po.close(); // 关闭进程池,关闭后po不再接收新的请求
    po.join()?; // 等待po中所有子进程执行完成,必须放在close语句之后
    println!("-----end-----");

    // 001-C: one task on a pool of cpu_count() workers, its result read after join.
    let pool = Pool::new(multiproc::cpu_count())?;
    let result = pool.apply_async(do_something, 3);
    pool.close();
    pool.join()?;
    println!("{}", result.get()?);

    // 003-I: collect every result after join.
    let p = Pool::builder().build()?;
    let res_l: Vec<_> = (0..10).map(|i| p.apply_async(work, i)).collect();
    p.close();
    p.join()?; // 等待进程池中所有进程执行完毕
    let nums = res_l.into_iter().map(|res| res.get()).collect::<Result<Vec<_>, _>>()?; // 拿到所有结果
    println!("{nums:?}"); // 主进程拿到所有的处理结果,可以在主进程中进行统一进行处理

    // 004-C: Pool(processes=4), results printed in submission order.
    let pool = Pool::builder().processes(4).build()?;
    let result: Vec<_> = (0..10).map(|i| pool.apply_async(func, format!("hello {i}"))).collect();
    pool.close();
    pool.join()?;
    for res in result {
        println!("{}", res.get()?);
    }
    println!("Sub-process(es) done.");
    Ok(())
}
