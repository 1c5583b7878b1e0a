//! `imap` pulls an endless input through a bounded window.

use std::sync::atomic::{AtomicUsize, Ordering};

use multiproc::{MapOptions, Pool};

multiproc::test_init!();

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn an_endless_input_is_read_only_a_window_ahead() {
    let pool = Pool::new(2).unwrap();
    let pulled = AtomicUsize::new(0);
    let input = (0u64..).inspect(|_| {
        pulled.fetch_add(1, Ordering::Relaxed);
    });
    let window = 16;
    let mut it = pool.imap_with(square, input, &MapOptions::new().window(window));
    for i in 0..1000u64 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
        let read = pulled.load(Ordering::Relaxed);
        assert!(read <= i as usize + 1 + window, "read {read} items after yielding {}", i + 1);
    }
    drop(it);
    assert!(pulled.load(Ordering::Relaxed) <= 1000 + window);
}

#[test]
fn imap_unordered_over_an_endless_input_is_bounded_too() {
    let pool = Pool::new(2).unwrap();
    let pulled = AtomicUsize::new(0);
    let input = (0u64..).inspect(|_| {
        pulled.fetch_add(1, Ordering::Relaxed);
    });
    let got: Vec<u64> = pool.imap_unordered(square, input).take(500).map(Result::unwrap).collect();
    assert_eq!(got.len(), 500);
    assert!(pulled.load(Ordering::Relaxed) <= 500 + 64, "default window is bounded");
}

#[test]
fn the_input_may_borrow_from_the_caller() {
    let pool = Pool::new(2).unwrap();
    let data: Vec<u64> = (0..100).collect();
    let sum: u64 = pool.imap(square, data.iter().copied()).map(Result::unwrap).sum();
    assert_eq!(sum, data.iter().map(|x| x * x).sum());
}
