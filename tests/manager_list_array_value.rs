//! Manager lists, arrays, values and namespaces.

use multiproc::manager::{ArrayProxy, ListProxy, NamespaceProxy, ValueProxy};
use multiproc::{Manager, ManagerError, Process};

multiproc::test_init!();

fn child_appends(l: ListProxy<u32>) {
    l.push(std::process::id()).unwrap();
}

#[test]
fn list_operations_and_snapshot_iterator() {
    let m = Manager::start().unwrap();
    let l = m.list::<u32>().unwrap();
    l.extend([1, 2, 3]).unwrap();
    l.insert(0, 0).unwrap();
    assert_eq!(l.to_vec().unwrap(), [0, 1, 2, 3]);
    assert_eq!(l.remove(1).unwrap(), 1);
    l.set(0, 10).unwrap();
    assert!(matches!(l.set(9, 1), Err(ManagerError::IndexOutOfRange { index: 9, len: 3 })));
    assert_eq!(l.get(2).unwrap(), Some(3));
    assert_eq!(l.get(3).unwrap(), None);
    assert_eq!(l.modify(1, |x: u32| x * 100).unwrap(), 200);
    let snapshot = l.iter().unwrap();
    l.clear().unwrap();
    assert_eq!(snapshot.collect::<Vec<_>>(), [10, 200, 3]);
    assert!(l.is_empty().unwrap());
    assert_eq!(l.pop().unwrap(), None);

    let mut p = Process::new(child_appends, l.clone());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(l.to_vec().unwrap(), [p.pid().unwrap()]);
}

fn child_doubles(a: ArrayProxy<i64>) {
    for i in 0..a.len().unwrap() {
        a.modify(i, |x: i64| x * 2).unwrap();
    }
}

#[test]
fn an_array_has_a_fixed_length() {
    let m = Manager::start().unwrap();
    let a = m.array([1i64, 2, 3]).unwrap();
    let mut p = Process::new(child_doubles, a.clone());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(a.to_vec().unwrap(), [2, 4, 6]);
    assert!(a.set(3, 0).is_err());
}

fn child_sets(args: (ValueProxy<String>, NamespaceProxy)) {
    let (v, ns) = args;
    v.set(format!("from {}", std::process::id())).unwrap();
    ns.set("count", &3u64).unwrap();
}

#[test]
fn values_and_namespaces_cross_processes() {
    let m = Manager::start().unwrap();
    let v = m.value(String::from("start")).unwrap();
    let ns = m.namespace().unwrap();
    let mut p = Process::new(child_sets, (v.clone(), ns.clone()));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(v.get().unwrap(), format!("from {}", p.pid().unwrap()));
    assert_eq!(ns.get::<u64>("count").unwrap(), Some(3));
    let e = ns.get::<String>("count").unwrap_err();
    assert!(e.to_string().contains("holds a `u64`"), "{e}");
    assert!(ns.remove("count").unwrap());
    assert_eq!(ns.get::<u64>("count").unwrap(), None);
    assert_eq!(v.modify(|s: String| s.to_uppercase()).unwrap(), format!("FROM {}", p.pid().unwrap()));
}
