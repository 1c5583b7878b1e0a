//! A manager dict: every operation, from the parent and from a child process.

use multiproc::manager::DictProxy;
use multiproc::{Manager, ManagerError, Process};

multiproc::test_init!();

fn child_writes(d: DictProxy<String, u64>) {
    d.insert("child".into(), std::process::id() as u64).unwrap();
    d.update([("x".to_string(), 1), ("y".to_string(), 2)]).unwrap();
    assert_eq!(d.remove("gone").unwrap(), Some(0));
}

#[test]
fn every_dict_operation_works_across_processes() {
    let m = Manager::start().unwrap();
    let d = m.dict::<String, u64>().unwrap();
    assert!(d.is_empty().unwrap());
    assert_eq!(d.insert("gone".into(), 0).unwrap(), None);
    d.set("first".into(), 10).unwrap();
    assert_eq!(d.insert("first".into(), 11).unwrap(), Some(10));

    let mut p = Process::new(child_writes, d.clone());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));

    let pid = p.pid().unwrap() as u64;
    assert_eq!(d.get("child").unwrap(), Some(pid));
    assert_eq!(d.get("nothing").unwrap(), None);
    assert!(d.contains_key("x").unwrap());
    assert!(!d.contains_key("gone").unwrap());
    assert_eq!(d.len().unwrap(), 4);
    // Insertion order, as a Python dict.
    assert_eq!(d.keys().unwrap(), ["first", "child", "x", "y"]);
    assert_eq!(d.values().unwrap(), [11, pid, 1, 2]);
    assert_eq!(d.items().unwrap()[2], ("x".to_string(), 1));
    assert_eq!(d.get_many(["x", "nothing", "y"]).unwrap(), [Some(1), None, Some(2)]);
    assert_eq!(d.modify("x", |v: Option<u64>| v.unwrap_or(0) + 41).unwrap(), 42);
    assert_eq!(d.modify("new", |v: Option<u64>| v.unwrap_or(7)).unwrap(), 7);
    d.clear().unwrap();
    assert_eq!(d.len().unwrap(), 0);
}

fn panics_in_server(_: Option<u64>) -> u64 {
    panic!("no thanks")
}

#[test]
fn a_panicking_modify_leaves_the_value_and_the_server_alone() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u8, u64>().unwrap();
    d.insert(1, 5).unwrap();
    let e = d.modify(&1, panics_in_server).unwrap_err();
    assert!(matches!(e, ManagerError::Panicked(ref msg) if msg.contains("no thanks")), "{e}");
    assert_eq!(d.get(&1).unwrap(), Some(5));
}

#[test]
fn a_proxy_received_as_another_type_is_refused() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    let bytes = postcard::to_allocvec(&d).unwrap();
    let wrong = postcard::from_bytes::<DictProxy<String, String>>(&bytes).unwrap();
    let e = wrong.len().unwrap_err();
    assert!(matches!(e, ManagerError::Unusable(_)), "{e}");
    assert!(e.to_string().contains("dict<u8, u8> was received as a proxy of dict<alloc::string::String"), "{e}");
    let same: DictProxy<u8, u8> = postcard::from_bytes(&bytes).unwrap();
    same.insert(1, 2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
}
