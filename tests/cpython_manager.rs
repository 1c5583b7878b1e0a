//! Ports of CPython's manager tests.
//!
//! Provenance: `Lib/test/_test_multiprocessing.py` of CPython (the `main` branch at
//! commit 00811485ee5f, the 3.15 development line), classes `_TestContainers`,
//! `_TestRemoteManager` and `_TestManagerRestart`. Each test names the method it ports.
//!
//! Differences, and cases not ported:
//! - Proxies are typed: a list holds one element type, so CPython's mixed lists
//!   (`[0, ..., 'hello']`) become lists of one type, and slices are `to_vec()`.
//! - `test_list_iter`: a list's `iter()` here is a snapshot taken in one request, so its
//!   "list modified during iteration" case (Python iterates a list proxy by index, live)
//!   does not apply. A dict's `iter()` is live, as Python's: `test_dict_iter` is ported.
//! - `test_list_isinstance`, `test_dict_isinstance`: Python's abstract base classes.
//! - `_TestRemoteManager`'s xmlrpclib serializer: there is one serializer here.
//! - `_TestMyManager`, `TestManagerExceptions`: registering arbitrary classes and
//!   reference-cycle checks are Python's; custom objects have their own tests
//!   (`manager_custom_object.rs`).
//! - Nested proxies (`test_list_proxy_in_list`, `test_dict_proxy_nested`,
//!   `test_nested_queue`) run each under a time limit, so that a hang (issue 14, finding
//!   4, since fixed) reports a failure instead of lasting forever.

use std::sync::mpsc;
use std::time::Duration;

use multiproc::manager::{DictProxy, ListProxy, QueueProxy};
use multiproc::{Manager, Process};

multiproc::test_init!();

/// Runs `f` on a thread; a failure if it has not returned within a minute (the thread
/// is left behind: the point is to report the hang).
fn within_a_minute(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the body panicked (see above)"),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung: no answer within a minute"),
    }
}

/// `_TestContainers.test_list` (without the nested lists: see `list_proxy_in_list`).
#[test]
fn list() {
    let m = Manager::start().unwrap();
    let a = m.list::<i64>().unwrap();
    a.extend(0..10).unwrap();
    assert_eq!(a.to_vec().unwrap(), (0..10).collect::<Vec<_>>());
    let b = m.list::<i64>().unwrap();
    assert_eq!(b.to_vec().unwrap(), Vec::<i64>::new());
    assert!(b.is_empty().unwrap());
    b.extend(0..5).unwrap();
    assert_eq!(b.to_vec().unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(b.get(2).unwrap(), Some(2));
    assert_eq!(b.to_vec().unwrap()[2..], [2, 3, 4]);
    // b *= 2
    b.extend(b.to_vec().unwrap()).unwrap();
    assert_eq!(b.to_vec().unwrap(), vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    assert_eq!(b.len().unwrap(), 10);
    assert_eq!(a.to_vec().unwrap(), (0..10).collect::<Vec<_>>());
    a.push(10).unwrap();
    assert_eq!(a.get(10).unwrap(), Some(10));
    assert_eq!(a.get(11).unwrap(), None);
    assert_eq!(a.pop().unwrap(), Some(10));
}

/// `_TestContainers.test_list_proxy_in_list`
#[test]
fn list_proxy_in_list() {
    within_a_minute(|| {
        let m = Manager::start().unwrap();
        let a = m.list::<ListProxy<i64>>().unwrap();
        for _ in 0..3 {
            let inner = m.list::<i64>().unwrap();
            inner.extend(0..3).unwrap();
            a.push(inner).unwrap();
        }
        let inners: Vec<ListProxy<i64>> = a.to_vec().unwrap();
        assert!(inners.iter().all(|l| l.to_vec().unwrap() == [0, 1, 2]));
        inners[0].set(2, 55).unwrap();
        assert_eq!(a.get(0).unwrap().unwrap().to_vec().unwrap(), [0, 1, 55]);
        assert_eq!(a.get(1).unwrap().unwrap().pop().unwrap(), Some(2));
        assert_eq!(a.get(1).unwrap().unwrap().len().unwrap(), 2);
        assert_eq!(a.get(2).unwrap().unwrap().len().unwrap(), 3);
    });
}

/// `_TestContainers.test_dict`
#[test]
fn dict() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u32, char>().unwrap();
    let indices: Vec<u32> = (65..70).collect();
    for &i in &indices {
        d.insert(i, char::from_u32(i).unwrap()).unwrap();
    }
    let mut keys = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys, indices);
    let mut values = d.values().unwrap();
    values.sort();
    assert_eq!(values, ['A', 'B', 'C', 'D', 'E']);
    let mut items = d.items().unwrap();
    items.sort();
    assert_eq!(items, indices.iter().map(|&i| (i, char::from_u32(i).unwrap())).collect::<Vec<_>>());
    assert_eq!(d.len().unwrap(), 5);
    assert_eq!(d.remove(&65).unwrap(), Some('A'));
    assert!(!d.contains_key(&65).unwrap());
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
}

/// `_TestContainers.test_dict_iter`
#[test]
fn dict_iter() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u32, char>().unwrap();
    let indices: Vec<u32> = (65..70).collect();
    for &i in &indices {
        d.insert(i, char::from_u32(i).unwrap()).unwrap();
    }
    let mut it = d.iter().unwrap();
    assert_eq!(it.by_ref().collect::<Result<Vec<_>, _>>().unwrap(), indices);
    assert_eq!(it.count(), 0, "exhausted");
    // dictionary changed size during iteration
    let mut it = d.iter().unwrap();
    d.clear().unwrap();
    assert!(matches!(it.next(), Some(Ok(65))), "the first keys were read with the iterator");
    let err = it.find_map(Result::err).expect("an error");
    assert!(err.to_string().contains("dictionary changed size during iteration"), "{err}");
}

/// `_TestContainers.test_dict_proxy_nested`
#[test]
fn dict_proxy_nested() {
    within_a_minute(|| {
        let m = Manager::start().unwrap();
        let pets = m.dict::<String, u32>().unwrap();
        pets.update([("ferrets".to_string(), 2), ("hamsters".to_string(), 4)]).unwrap();
        let supplies = m.dict::<String, u32>().unwrap();
        supplies.update([("water".to_string(), 10), ("feed".to_string(), 3)]).unwrap();
        let d = m.dict::<String, DictProxy<String, u32>>().unwrap();
        d.insert("pets".into(), pets.clone()).unwrap();
        d.insert("supplies".into(), supplies.clone()).unwrap();
        assert_eq!(d.get("supplies").unwrap().unwrap().get("water").unwrap(), Some(10));
        d.get("supplies").unwrap().unwrap().insert("blankets".into(), 5).unwrap();
        assert_eq!(supplies.get("blankets").unwrap(), Some(5));
        drop((pets, supplies));
        // The dict keeps its objects alive.
        assert_eq!(d.get("pets").unwrap().unwrap().get("ferrets").unwrap(), Some(2));
        let supplies = d.get("supplies").unwrap().unwrap();
        d.clear().unwrap();
        assert_eq!(d.len().unwrap(), 0);
        assert_eq!(supplies.get("water").unwrap(), Some(10));
        let l = m.list::<DictProxy<String, u32>>().unwrap();
        l.push(supplies.clone()).unwrap();
        l.get(0).unwrap().unwrap().insert("marmots".into(), 1).unwrap();
        assert_eq!(supplies.get("marmots").unwrap(), Some(1));
    });
}

/// `_TestContainers.test_nested_queue`
#[test]
fn nested_queue() {
    within_a_minute(|| {
        let m = Manager::start().unwrap();
        let a = m.list::<QueueProxy<u32>>().unwrap();
        a.push(m.queue::<u32>(0).unwrap()).unwrap();
        a.get(0).unwrap().unwrap().put(123).unwrap();
        assert_eq!(a.get(0).unwrap().unwrap().get().unwrap(), 123);
        let b = m.dict::<u32, QueueProxy<u32>>().unwrap();
        b.insert(0, m.queue::<u32>(0).unwrap()).unwrap();
        b.get(&0).unwrap().unwrap().put(456).unwrap();
        assert_eq!(b.get(&0).unwrap().unwrap().get().unwrap(), 456);
    });
}

/// `_TestContainers.test_namespace`
#[test]
fn namespace() {
    let m = Manager::start().unwrap();
    let n = m.namespace().unwrap();
    n.set("name", "Bob").unwrap();
    n.set("job", "Builder").unwrap();
    n.set("_hidden", "hidden").unwrap();
    assert_eq!(n.get::<String>("name").unwrap().as_deref(), Some("Bob"));
    assert_eq!(n.get::<String>("job").unwrap().as_deref(), Some("Builder"));
    assert!(n.remove("job").unwrap());
    assert_eq!(n.get::<String>("job").unwrap(), None);
    let mut names = n.names().unwrap();
    names.sort();
    assert_eq!(names, ["_hidden", "name"]);
}

/// The values of `_TestRemoteManager`: several kinds, non-ASCII text and bytes included.
type Values = (String, Option<u8>, bool, f64, String, String, Vec<u8>);

fn values() -> Values {
    (
        "hello world".into(),
        None,
        true,
        2.25,
        "hall\u{e5} v\u{e4}rlden".into(),
        "\u{43f}\u{440}\u{438}\u{432}\u{456}\u{442} \u{441}\u{432}\u{456}\u{442}".into(),
        b"hall\xe5 v\xe4rlden".to_vec(),
    )
}

fn putter((address, key): (String, Vec<u8>)) {
    let m = Manager::connect(&address.parse().unwrap(), key).unwrap();
    let q: QueueProxy<Values> = m.lookup("queue").unwrap();
    q.put(values()).unwrap();
}

fn tcp_manager(address: &str, key: &[u8]) -> Manager {
    Manager::builder().tcp(address.parse().unwrap()).authkey(key).start().unwrap()
}

/// `_TestRemoteManager.test_remote`: a client process connects over TCP with the key
/// and puts; another connection gets the very values.
#[test]
fn remote() {
    let key = b"a key of thirty-two bytes, or so".to_vec();
    let m = tcp_manager("127.0.0.1:0", &key);
    let q = m.queue::<Values>(0).unwrap();
    m.publish("queue", &q).unwrap();
    let mut p = Process::new(putter, (m.address().to_string(), key.clone()));
    p.start().unwrap();
    let other = Manager::connect(m.address(), &key).unwrap();
    let q2: QueueProxy<Values> = other.lookup("queue").unwrap();
    assert_eq!(q2.get_timeout(Duration::from_secs(60)).unwrap(), values());
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

fn put_hello((address, key): (String, Vec<u8>)) {
    let m = Manager::connect(&address.parse().unwrap(), key).unwrap();
    let q: QueueProxy<String> = m.lookup("queue").unwrap();
    q.put("hello world".into()).unwrap();
}

/// `_TestManagerRestart.test_rapid_restart`: a manager shut down frees its address for
/// the next one at once, and the new one serves (the first manager's client, still alive
/// in `m`, is not taken for the new server's).
#[test]
fn rapid_restart() {
    let key = b"restart".to_vec();
    let mut m = tcp_manager("127.0.0.1:0", &key);
    let address = m.address().to_string();
    let q = m.queue::<String>(0).unwrap();
    m.publish("queue", &q).unwrap();
    let mut p = Process::new(put_hello, (address.clone(), key.clone()));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), "hello world");
    drop(q);
    m.shutdown().unwrap();
    let again = tcp_manager(&address, &key);
    assert_eq!(again.address().to_string(), address);
    assert_eq!(again.value(1u8).unwrap().get().unwrap(), 1);
}
