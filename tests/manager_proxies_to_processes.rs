//! Proxies travel to processes as arguments; each process connects on its own, and the
//! object outlives the sender's proxy while a receiver still has to adopt it.

use multiproc::manager::{DictProxy, QueueProxy};
use multiproc::{Manager, Process};

multiproc::test_init!();

fn nested(args: (DictProxy<u32, u32>, QueueProxy<u32>)) {
    let (d, done) = args;
    d.insert(1, std::process::id()).unwrap();
    // A grandchild gets the proxy from this child.
    let mut p = Process::new(grandchild, d.clone());
    p.start().unwrap();
    p.join().unwrap();
    done.put(p.pid().unwrap()).unwrap();
}

fn grandchild(d: DictProxy<u32, u32>) {
    d.insert(2, std::process::id()).unwrap();
}

#[test]
fn proxies_pass_through_children_and_grandchildren() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u32, u32>().unwrap();
    let done = m.queue::<u32>(0).unwrap();
    let mut p = Process::new(nested, (d.clone(), done.clone()));
    p.start().unwrap();
    let grandchild_pid = done.get().unwrap();
    p.join().unwrap();
    assert_eq!(d.get(&1).unwrap(), p.pid());
    assert_eq!(d.get(&2).unwrap(), Some(grandchild_pid));
}

fn late_reader(args: (DictProxy<u32, u32>, QueueProxy<u32>)) {
    let (d, out) = args;
    out.put(d.get(&7).unwrap().unwrap()).unwrap();
}

#[test]
fn the_sender_may_drop_its_proxy_before_the_child_adopts_it() {
    let m = Manager::start().unwrap();
    let out = m.queue::<u32>(0).unwrap();
    let p = {
        let d = m.dict::<u32, u32>().unwrap();
        d.insert(7, 70).unwrap();
        let mut p = Process::new(late_reader, (d, out.clone()));
        p.start().unwrap();
        p
        // Every proxy of the dict in this process is gone here.
    };
    assert_eq!(out.get().unwrap(), 70);
    p.join().unwrap();
    // Once the child is done, the dict is freed: only the queue remains.
    assert!(m.wait_object_count(1, std::time::Duration::from_secs(30)).unwrap());
}

#[test]
fn clones_count_as_references() {
    let m = Manager::start().unwrap();
    let a = m.list::<u8>().unwrap();
    let b = a.clone();
    drop(a);
    b.push(1).unwrap();
    assert_eq!(b.to_vec().unwrap(), [1]);
    assert_eq!(m.object_count().unwrap(), 1);
    drop(b);
    assert!(m.wait_object_count(0, std::time::Duration::from_secs(30)).unwrap());
}
