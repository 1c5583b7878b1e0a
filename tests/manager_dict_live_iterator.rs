//! `DictProxy::iter` is live, as Python's `iter(d)` on a dict proxy is (an iterator in
//! the server, not a copy): it sees the dict as it is when it reads on, and when the dict
//! gains or loses keys meanwhile — here by another process — the next read is an error,
//! Python's "dictionary changed size during iteration".

use multiproc::manager::DictProxy;
use multiproc::{Manager, ManagerError, Process};

multiproc::test_init!();

/// More keys than one read of the iterator fetches, so that iterating reads again.
const KEYS: u32 = 1000;

fn filled(m: &Manager) -> DictProxy<u32, u32> {
    let d = m.dict::<u32, u32>().unwrap();
    // Inserted in descending order, to see that iteration keeps insertion order.
    d.update((0..KEYS).rev().map(|k| (k, k))).unwrap();
    d
}

#[test]
fn every_key_in_insertion_order_while_values_change() {
    let m = Manager::start().unwrap();
    let d = filled(&m);
    let mut seen = Vec::new();
    for k in d.iter().unwrap() {
        let k = k.unwrap();
        // Replacing a value does not change the dict's size: the iteration goes on.
        d.insert(k, k + 1).unwrap();
        seen.push(k);
    }
    assert_eq!(seen, (0..KEYS).rev().collect::<Vec<_>>());
    assert_eq!(d.get(&0).unwrap(), Some(1));
}

fn add_key(d: DictProxy<u32, u32>) {
    d.insert(KEYS, KEYS).unwrap();
}

#[test]
fn a_key_added_by_another_process_during_iteration_is_an_error() {
    let m = Manager::start().unwrap();
    let d = filled(&m);
    let mut it = d.iter().unwrap();
    assert_eq!(it.next().unwrap().unwrap(), KEYS - 1);
    let mut p = Process::new(add_key, d.clone());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    let rest: Vec<Result<u32, ManagerError>> = it.collect();
    let err = rest.last().expect("more keys").as_ref().expect_err("the dict changed size");
    assert!(err.to_string().contains("dictionary changed size during iteration"), "{err}");
    assert!(rest[..rest.len() - 1].iter().all(Result::is_ok), "the error ends the iteration");
}

#[test]
fn a_key_removed_during_iteration_is_an_error_and_an_empty_dict_yields_nothing() {
    let m = Manager::start().unwrap();
    let d = filled(&m);
    let mut it = d.iter().unwrap();
    it.next().unwrap().unwrap();
    d.remove(&0).unwrap();
    assert!(it.any(|k| k.is_err()));
    d.clear().unwrap();
    assert_eq!(d.iter().unwrap().count(), 0);
}
