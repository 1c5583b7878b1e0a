//! Seed 002: ten processes put their pid into a shared dict and a shared list; the
//! parent prints both. (Python: `m = Manager(); d = m.dict(); k = m.list()`, each child
//! runs `d[os.getpid()] = os.getpid(); k.append(os.getpid()); print(k)`.)
//! Seed 001 only names `Manager().Array`: one is shown at the end.
//!
//! Run with `cargo run --example manager_dict_list`.

use multiproc::manager::{DictProxy, ListProxy};
use multiproc::{Manager, Process};

fn f(args: (DictProxy<u32, u32>, ListProxy<u32>)) {
    let (d, k) = args;
    let pid = std::process::id();
    d.set(pid, pid).unwrap();
    k.push(pid).unwrap();
    println!("{:?}", k.to_vec().unwrap());
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let m = Manager::start()?;
    let d = m.dict::<u32, u32>()?; // a dict shared by, and passed between, processes
    let k = m.list::<u32>()?; // a list shared by, and passed between, processes
    let mut li = Vec::new();
    for _ in 0..10 {
        let mut p = Process::new(f, (d.clone(), k.clone()));
        p.start()?;
        li.push(p);
    }
    for p in &li {
        p.join()?;
    }
    // Python prints a dict proxy as `{3476: 3476, 3477: 3477, ...}`.
    let items: Vec<String> = d.items()?.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("{{{}}}", items.join(", "));
    println!("{:?}", k.to_vec()?);

    let a = m.array([0u32; 3])?;
    a.modify(0, |x: u32| x + 1)?;
    println!("array: {:?}", a.to_vec()?);
    Ok(())
}
