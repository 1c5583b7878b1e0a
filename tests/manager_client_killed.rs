//! A client process killed (SIGKILL) in the middle of requests: the server goes on, the
//! client's references are released, and an item it was waiting for is not lost.

use multiproc::manager::{DictProxy, EventProxy, QueueProxy};
use multiproc::{Manager, Process};
use std::time::Duration;

multiproc::test_init!();

fn busy(args: (DictProxy<u64, u64>, EventProxy, String, Vec<u8>)) {
    let (d, started, address, key) = args;
    // Objects only this process refers to.
    let own = Manager::connect(&address.parse().unwrap(), key).unwrap();
    let mine = own.dict::<u64, u64>().unwrap();
    let _list = own.list::<u64>().unwrap();
    started.set().unwrap();
    let mut i = 0;
    loop {
        d.insert(i % 100, i).unwrap();
        mine.set(i, i).unwrap();
        i += 1;
    }
}

fn blocked_getter(args: (QueueProxy<String>, EventProxy)) {
    let (q, started) = args;
    started.set().unwrap();
    let item = q.get().unwrap();
    panic!("should have been killed before getting {item}");
}

#[test]
fn killing_a_busy_client_leaves_the_server_serving() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u64, u64>().unwrap();
    let started = m.event().unwrap();
    let mut p = Process::new(busy, (d.clone(), started.clone(), m.address().to_string(), m.authkey().to_vec()));
    p.start().unwrap();
    started.wait().unwrap();
    assert_eq!(m.object_count().unwrap(), 4);
    p.kill().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-9));
    // Its own dict and list go with it; ours stay.
    assert!(m.wait_object_count(2, Duration::from_secs(30)).unwrap());
    d.insert(1000, 1).unwrap();
    assert!(d.len().unwrap() >= 1);
}

#[test]
fn an_item_is_not_lost_to_a_getter_killed_while_waiting() {
    let m = Manager::start().unwrap();
    let q = m.queue::<String>(0).unwrap();
    let started = m.event().unwrap();
    let mut p = Process::new(blocked_getter, (q.clone(), started.clone()));
    p.start().unwrap();
    started.wait().unwrap();
    p.kill().unwrap();
    p.join().unwrap();
    q.put("precious".into()).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(30)).unwrap(), "precious");
}
