//! A proxy stored inside a manager container keeps its object alive, as in Python: the
//! container holds a reference in the server until the value holding the proxy is
//! removed or overwritten, or the container itself is freed.

use std::time::Duration;

use multiproc::manager::{DictProxy, ListProxy, QueueProxy};
use multiproc::{Manager, Process};

multiproc::test_init!();

/// How long the server may take to free objects whose last reference was dropped (drops
/// are sent without waiting): far beyond what it needs.
const FREED_WITHIN: Duration = Duration::from_secs(60);

/// The brief's case: a list pushed into a dict, every client handle to it dropped, read
/// back from the dict (more than once) and used.
#[test]
fn a_list_in_a_dict_outlives_its_last_client_handle() {
    let m = Manager::start().unwrap();
    let d = m.dict::<String, ListProxy<i64>>().unwrap();
    let inner = m.list::<i64>().unwrap();
    inner.extend([1, 2]).unwrap();
    d.insert("inner".into(), inner).unwrap();
    // Every client handle to the list is gone; only the dict refers to it.
    assert!(m.wait_object_count(2, FREED_WITHIN).unwrap());
    for round in 0..3 {
        let back = d.get("inner").unwrap().expect("stored");
        back.push(10 + round).unwrap();
        drop(back);
    }
    assert!(m.wait_object_count(2, FREED_WITHIN).unwrap());
    assert_eq!(d.get("inner").unwrap().unwrap().to_vec().unwrap(), [1, 2, 10, 11, 12]);
}

fn store_and_exit((d, inner): (DictProxy<String, ListProxy<i64>>, ListProxy<i64>)) {
    inner.push(7).unwrap();
    d.insert("from the child".into(), inner).unwrap();
}

/// A process stores a proxy in a shared dict and exits: the object outlives the process.
#[test]
fn a_proxy_stored_by_a_process_that_exits_stays_usable() {
    let m = Manager::start().unwrap();
    let d = m.dict::<String, ListProxy<i64>>().unwrap();
    let inner = m.list::<i64>().unwrap();
    let mut p = Process::new(store_and_exit, (d.clone(), inner));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    let back = d.get("from the child").unwrap().expect("stored by the child");
    assert_eq!(back.to_vec().unwrap(), [7]);
}

/// Removing, overwriting or clearing lets go of the object; the value removed comes back
/// usable; a freed container lets go of everything it held.
#[test]
fn removal_and_the_containers_end_release_what_it_held() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u32, ListProxy<u32>>().unwrap();
    for k in 0..3 {
        d.insert(k, m.list::<u32>().unwrap()).unwrap();
    }
    assert!(m.wait_object_count(4, FREED_WITHIN).unwrap());
    assert_eq!(m.object_count().unwrap(), 4, "the dict holds its three lists");
    let removed = d.remove(&0).unwrap().expect("stored");
    removed.push(1).unwrap();
    drop(removed);
    assert!(m.wait_object_count(3, FREED_WITHIN).unwrap(), "the removed list was freed");
    d.insert(1, m.list::<u32>().unwrap()).unwrap().expect("replaced").push(2).unwrap();
    assert!(m.wait_object_count(3, FREED_WITHIN).unwrap(), "the replaced list was freed");
    d.clear().unwrap();
    assert!(m.wait_object_count(1, FREED_WITHIN).unwrap(), "the cleared lists were freed");
    let outer = m.list::<DictProxy<u32, ListProxy<u32>>>().unwrap();
    outer.push(d).unwrap();
    d_of(&outer).insert(9, m.list::<u32>().unwrap()).unwrap();
    assert!(m.wait_object_count(3, FREED_WITHIN).unwrap());
    assert_eq!(m.object_count().unwrap(), 3, "list > dict > list, held from the outside in");
    drop(outer);
    assert!(m.wait_object_count(0, FREED_WITHIN).unwrap(), "freed with the outer list");
}

fn d_of(outer: &ListProxy<DictProxy<u32, ListProxy<u32>>>) -> DictProxy<u32, ListProxy<u32>> {
    outer.get(0).unwrap().expect("pushed")
}

fn get_and_use(q: QueueProxy<ListProxy<u32>>) {
    let list = q.get().unwrap();
    list.push(42).unwrap();
}

/// A proxy put in a queue lives while it waits there, and goes with the item to the
/// process that gets it.
#[test]
fn a_proxy_in_a_queue_lives_until_a_process_gets_it() {
    let m = Manager::start().unwrap();
    let q = m.queue::<ListProxy<u32>>(0).unwrap();
    let d = m.dict::<u8, ListProxy<u32>>().unwrap();
    let list = m.list::<u32>().unwrap();
    d.insert(0, list.clone()).unwrap();
    q.put(list).unwrap();
    d.clear().unwrap();
    assert!(m.wait_object_count(3, FREED_WITHIN).unwrap());
    let mut p = Process::new(get_and_use, q.clone());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    // The child pushed, then its reference went with it: the list is freed.
    assert!(m.wait_object_count(2, FREED_WITHIN).unwrap());
}

/// A value's initial value, a namespace attribute and a list item hold too; a popped item
/// comes back usable.
#[test]
fn values_namespaces_and_lists_hold_their_proxies() {
    let m = Manager::start().unwrap();
    let v = m.value(m.dict::<u8, u8>().unwrap()).unwrap();
    let ns = m.namespace().unwrap();
    ns.set("queue", &m.queue::<u8>(0).unwrap()).unwrap();
    let l = m.list::<ListProxy<u8>>().unwrap();
    l.push(m.list::<u8>().unwrap()).unwrap();
    assert!(m.wait_object_count(6, FREED_WITHIN).unwrap());
    assert_eq!(m.object_count().unwrap(), 6, "three containers and what they hold");
    v.get().unwrap().insert(1, 2).unwrap();
    assert_eq!(v.get().unwrap().get(&1).unwrap(), Some(2));
    let q: QueueProxy<u8> = ns.get("queue").unwrap().expect("set");
    q.put(3).unwrap();
    drop(q);
    assert_eq!(ns.get::<QueueProxy<u8>>("queue").unwrap().unwrap().get().unwrap(), 3);
    let popped = l.pop().unwrap().expect("pushed");
    popped.push(4).unwrap();
    assert_eq!(popped.to_vec().unwrap(), [4]);
    drop(popped);
    assert!(ns.remove("queue").unwrap());
    v.set(m.dict::<u8, u8>().unwrap()).unwrap();
    assert!(m.wait_object_count(4, FREED_WITHIN).unwrap(), "popped, removed and overwritten: freed");
}
