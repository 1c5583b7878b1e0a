//! Seeds 002-F and 003-H: callbacks run in the parent — the pid they print is the main
//! process's — fed by the values the tasks return.
//!
//! One second of the seeds is 100 ms here; 003-H's downloads are simulated by a short
//! sleep (no network needed). Run with `cargo run --example pool_callbacks`.

use std::time::Duration;

use multiproc::{Pool, TaskOptions};

const UNIT: Duration = Duration::from_millis(100);

fn f(i: u64) -> u64 {
    std::thread::sleep(UNIT * 2);
    println!("{i}");
    i + 1000
}

fn g(arg: &u64) {
    println!("in end -{} {arg}", std::process::id());
}

fn get_url(url: String) -> String {
    println!("--> {url} {} get_url进程", std::process::id());
    // 打开url, 读取网页内容: simulated by a delay that depends on the address.
    std::thread::sleep(UNIT * (url.len() as u32 % 5 + 1));
    url
}

fn call(url: &String) {
    // 回调函数
    println!("{url} {} 回调函数", std::process::id());
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    // 002-F
    let pool = Pool::new(3)?; // 允许进程同时放入3个进程(其余线程等待)
    println!("主线程 {}", std::process::id());
    for i in 0..10 {
        // 最后增加callback实现 在前函数调用结束后再调用的函数 会传入参数(参数是前函数的返回值)
        pool.apply_async_with(f, i, TaskOptions::new().callback(g));
    }
    println!("end ---");
    pool.close(); // 进程池 必须要先调用close关闭 在调用join函数
    pool.join()?;

    // 003-H
    println!("{} 主进程", std::process::id()); // 主进程id
    let l = [
        "http://www.baidu.com",
        "http://www.sina.com",
        "http://www.sohu.com",
        "http://www.sogou.com",
        "http://www.qq.com",
        "http://www.bilibili.com",
    ];
    let p = Pool::new(5)?;
    let mut ret_l = Vec::new();
    for url in l {
        let ret = p.apply_async_with(get_url, url.to_string(), TaskOptions::new().callback(call)); // 异步
        ret_l.push(ret); // 将进程追加到列表中
    }
    for ret in ret_l {
        ret.get()?; // 获取进程返回值
    }
    Ok(())
}
