//! A proxy stored inside a manager container: sending it makes a second request (the
//! transit of its reference) while the first is being built, and reading it back adopts
//! it with a request of its own. Neither may wait for the connection the outer call uses.

use std::sync::mpsc;
use std::time::Duration;

use multiproc::manager::{DictProxy, ListProxy, QueueProxy, ValueProxy};
use multiproc::{Manager, Process};

multiproc::test_init!();

/// How long a test may run before it counts as hung; far beyond what any of them needs.
const HANG_LIMIT: Duration = Duration::from_secs(60);

/// Aborts the whole test process, saying which test hung, unless dropped within
/// [`HANG_LIMIT`]: a hang is the failure these tests look for, and it would otherwise
/// last forever.
struct Watchdog(#[allow(dead_code)] mpsc::Sender<()>);

fn watchdog(test: &'static str) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(HANG_LIMIT) {
            // Straight to stderr: the test harness would swallow `eprintln!` with the process.
            let msg =
                format!("{test}: hung for {HANG_LIMIT:?} (a manager call holding a proxy deadlocked); aborting\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
            std::process::abort();
        }
    });
    Watchdog(tx)
}

#[test]
fn a_list_proxy_pushed_into_a_list_reads_back_usable() {
    let _w = watchdog("a_list_proxy_pushed_into_a_list_reads_back_usable");
    let m = Manager::start().unwrap();
    let outer = m.list::<ListProxy<u32>>().unwrap();
    let inner = m.list::<u32>().unwrap();
    outer.push(inner.clone()).unwrap();
    outer.insert(0, inner.clone()).unwrap();
    assert_eq!(outer.len().unwrap(), 2);
    let back = outer.get(1).unwrap().expect("one element");
    back.push(7).unwrap();
    assert_eq!(inner.to_vec().unwrap(), [7]);
    let all = outer.to_vec().unwrap();
    all[0].push(8).unwrap();
    assert_eq!(inner.to_vec().unwrap(), [7, 8]);
}

#[test]
fn a_dict_proxy_inserted_into_a_dict_reads_back_usable() {
    let _w = watchdog("a_dict_proxy_inserted_into_a_dict_reads_back_usable");
    let m = Manager::start().unwrap();
    let outer = m.dict::<String, DictProxy<u32, u32>>().unwrap();
    let inner = m.dict::<u32, u32>().unwrap();
    assert!(outer.insert("inner".into(), inner.clone()).unwrap().is_none());
    outer.set("again".into(), inner.clone()).unwrap();
    let back = outer.get("inner").unwrap().expect("inserted");
    back.insert(1, 10).unwrap();
    assert_eq!(inner.get(&1).unwrap(), Some(10));
    let replaced = outer.insert("inner".into(), inner.clone()).unwrap().expect("replaces one");
    replaced.insert(2, 20).unwrap();
    assert_eq!(inner.len().unwrap(), 2);
    for v in outer.values().unwrap() {
        assert_eq!(v.get(&2).unwrap(), Some(20));
    }
}

#[test]
fn a_queue_proxy_in_a_list_reads_back_usable() {
    let _w = watchdog("a_queue_proxy_in_a_list_reads_back_usable");
    let m = Manager::start().unwrap();
    let outer = m.list::<QueueProxy<String>>().unwrap();
    let q = m.queue::<String>(0).unwrap();
    outer.push(q.clone()).unwrap();
    let back = outer.pop().unwrap().expect("pushed");
    back.put("through the list".into()).unwrap();
    assert_eq!(q.get().unwrap(), "through the list");
}

#[test]
fn a_dict_proxy_as_a_values_initial_value_reads_back_usable() {
    let _w = watchdog("a_dict_proxy_as_a_values_initial_value_reads_back_usable");
    let m = Manager::start().unwrap();
    let inner = m.dict::<u8, u8>().unwrap();
    let v: ValueProxy<DictProxy<u8, u8>> = m.value(inner.clone()).unwrap();
    v.get().unwrap().insert(3, 30).unwrap();
    assert_eq!(inner.get(&3).unwrap(), Some(30));
}

#[test]
fn a_list_proxy_through_a_manager_queue_reads_back_usable() {
    let _w = watchdog("a_list_proxy_through_a_manager_queue_reads_back_usable");
    let m = Manager::start().unwrap();
    let q = m.queue::<ListProxy<u32>>(1).unwrap();
    let inner = m.list::<u32>().unwrap();
    q.put(inner.clone()).unwrap();
    q.get().unwrap().push(9).unwrap();
    assert_eq!(inner.to_vec().unwrap(), [9]);
}

/// The child reads the proxy its parent stored, uses it, and stores one of its own.
fn child(args: (ListProxy<ListProxy<u32>>, ListProxy<u32>, QueueProxy<u8>)) {
    let (outer, mine, done) = args;
    let first = outer.get(0).unwrap().expect("stored by the parent");
    first.push(42).unwrap();
    outer.push(mine).unwrap();
    done.put(1).unwrap();
}

#[test]
fn a_child_reads_and_stores_nested_proxies() {
    let _w = watchdog("a_child_reads_and_stores_nested_proxies");
    let m = Manager::start().unwrap();
    let outer = m.list::<ListProxy<u32>>().unwrap();
    let first = m.list::<u32>().unwrap();
    let second = m.list::<u32>().unwrap();
    let done = m.queue::<u8>(0).unwrap();
    outer.push(first.clone()).unwrap();
    let mut p = Process::new(child, (outer.clone(), second.clone(), done.clone()));
    p.start().unwrap();
    assert_eq!(done.get().unwrap(), 1);
    p.join().unwrap();
    assert_eq!(first.to_vec().unwrap(), [42]);
    let stored = outer.get(1).unwrap().expect("stored by the child");
    stored.push(5).unwrap();
    assert_eq!(second.to_vec().unwrap(), [5]);
}
