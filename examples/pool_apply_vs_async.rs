//! Seed 003 (programs A–E): blocking `apply` runs one task at a time; `apply_async`
//! keeps every worker busy and the results are collected with `get`.
//!
//! Which worker runs a serial `apply` differs from Python's: there, idle workers race for
//! the pool's shared task queue, so the seed shows them taking turns. Here a synchronous
//! `apply` borrows an idle worker directly (the *express lane*, one socket round trip
//! instead of two thread hops each way), and it takes the worker parked last — the one
//! that just returned the previous result. So ten serial calls usually print one pid (the
//! first call or two may go through the pool's driver while workers are still starting).
//! Nothing runs any slower for it: only one task exists at a time anyway. `apply_async`
//! (003-C) shows all three workers busy at once.
//!
//! One second of the seed is 50 ms here. Run with `cargo run --example pool_apply_vs_async`.

use std::time::{Duration, SystemTime};

use multiproc::Pool;

const UNIT: Duration = Duration::from_millis(50);

fn fc(i: u64) {
    std::thread::sleep(UNIT / 2);
    println!("func{i}");
}

fn work(n: u64) -> u64 {
    println!("{} run", std::process::id());
    std::thread::sleep(UNIT * 3);
    n * n
}

fn work_random(n: u64) -> u64 {
    println!("{} run", std::process::id());
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    std::thread::sleep(UNIT.mul_f64((nanos % 1000) as f64 / 1000.0));
    n * n
}

fn func(msg: String) -> String {
    println!("msg: {msg}");
    std::thread::sleep(UNIT);
    msg
}

/// Python's repr of a list of strings: `['a', 'b']`.
fn py_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", quoted.join(", "))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    // 003-A: Pool(5), five synchronous calls.
    let p = Pool::new(5)?;
    for i in 0..5 {
        p.apply(fc, i)?; // 同步调用
    }

    // 003-B: Pool(3), ten synchronous calls: one `run` line every 3 units.
    let p = Pool::new(3)?; // 进程池中从无到有创建三个进程,以后一直是这三个进程在执行任务
    let mut res_l = Vec::new();
    for i in 0..10 {
        res_l.push(p.apply(work, i)?); // 同步调用,直到本次任务执行完毕拿到res
    }
    println!("{res_l:?}");
    println!(
        "(one pid ran most serial calls: each apply reuses the idle worker that just finished; see the top of this file)"
    );

    // 003-C: the same with apply_async: three at a time, results after join.
    let p = Pool::new(3)?;
    let res_l: Vec<_> = (0..10).map(|i| p.apply_async(work_random, i)).collect(); // 异步运行
    p.close();
    p.join()?;
    for res in res_l {
        println!("{}", res.get()?);
    }

    // 003-D: apply in detail.
    let pool = Pool::new(3)?;
    let mut res_l = Vec::new();
    for i in 0..10 {
        res_l.push(pool.apply(func, format!("hello {i}"))?);
    }
    println!("===================>");
    pool.close();
    pool.join()?;
    println!("{}", py_list(&res_l));
    for i in &res_l {
        println!("{i}");
    }

    // 003-E: apply_async in detail: the separator comes first, then the handles.
    let pool = Pool::new(3)?;
    let res_l: Vec<_> = (0..10).map(|i| pool.apply_async(func, format!("hello {i}"))).collect();
    println!("==============================>"); // 没有后面的join,或get,则程序整体结束
    pool.close(); // 关闭进程池,防止进一步操作
    pool.join()?; // 调用join之前,先调用close函数,否则会出错
    println!("{res_l:?}"); // 看到的是AsyncResult对象组成的列表,而非最终的结果
    for i in res_l {
        println!("{}", i.get()?); // 使用get来获取apply_aync的结果
    }
    Ok(())
}
