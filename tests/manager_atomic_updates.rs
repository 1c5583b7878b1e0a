//! `modify` runs in the server under the object's lock: concurrent updates from several
//! processes lose nothing (Python's `d[k] += 1` does).

use multiproc::manager::{DictProxy, ValueProxy};
use multiproc::{Manager, Process};

multiproc::test_init!();

const ROUNDS: u64 = 200;

fn increment(n: Option<u64>) -> u64 {
    n.unwrap_or(0) + 1
}

fn hammer(args: (DictProxy<String, u64>, ValueProxy<u64>)) {
    let (d, v) = args;
    for _ in 0..ROUNDS {
        d.modify("hits", increment).unwrap();
        v.modify(|x: u64| x + 2).unwrap();
    }
}

#[test]
fn four_processes_lose_no_update() {
    let m = Manager::start().unwrap();
    let d = m.dict::<String, u64>().unwrap();
    let v = m.value(0u64).unwrap();
    let mut ps: Vec<Process> = (0..4).map(|_| Process::new(hammer, (d.clone(), v.clone()))).collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for p in &ps {
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
    assert_eq!(d.get("hits").unwrap(), Some(4 * ROUNDS));
    assert_eq!(v.get().unwrap(), 8 * ROUNDS);
}
