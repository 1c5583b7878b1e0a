//! `Value` and `Array` in shared memory, updated under their locks by several processes;
//! the raw variants without.

use multiproc::{Array, Process, RawArray, RawValue, Value};

multiproc::test_init!();

fn add_many(v: Value<u64>) {
    for _ in 0..1000 {
        *v.lock().unwrap() += 1;
    }
}

#[test]
fn increments_under_the_lock_from_four_processes_all_count() {
    let v = Value::new(0u64).unwrap();
    let mut ps: Vec<Process> = (0..4).map(|_| Process::new(add_many, v.clone())).collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for p in &ps {
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
    assert_eq!(v.get().unwrap(), 4000);
}

fn fill(a: Array<f64>) {
    let mut g = a.lock().unwrap();
    for (i, x) in g.iter_mut().enumerate() {
        *x = i as f64 * 0.5;
    }
}

#[test]
fn an_array_written_by_a_child_is_seen_by_the_parent() {
    let a = Array::new(5, 0.0f64).unwrap();
    assert_eq!(a.len(), 5);
    let mut p = Process::new(fill, a.clone());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(a.to_vec().unwrap(), [0.0, 0.5, 1.0, 1.5, 2.0]);
    assert_eq!(a.get(4).unwrap(), Some(2.0));
    assert_eq!(a.get(5).unwrap(), None);
    assert!(a.set(1, 9.0).unwrap());
    assert!(!a.set(7, 9.0).unwrap());
}

fn raw_child((v, a): (RawValue<i32>, RawArray<u8>)) {
    v.store(-5);
    a.set(0, 200);
}

#[test]
fn raw_values_and_arrays_are_shared_without_a_lock() {
    let v = RawValue::new(1i32).unwrap();
    let a = RawArray::from_slice(&[1u8, 2, 3]).unwrap();
    let mut p = Process::new(raw_child, (v.clone(), a.clone()));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(v.load(), -5);
    assert_eq!(a.to_vec(), [200, 2, 3]);
    assert_eq!(a.get(3), None);
}
