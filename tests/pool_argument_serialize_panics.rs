//! An argument whose `Serialize` panics: arguments are encoded on the caller's thread, so
//! the panic reaches the caller (as an exception raised by Python's iterable does), and
//! the pool is unharmed: what was submitted before settles, later calls work, and
//! closing leaves nothing behind.

use std::panic::{AssertUnwindSafe, catch_unwind};

use multiproc::Pool;
use serde::{Serialize, Serializer};

mod common;
use common::assert_gone;

multiproc::test_init!();

/// Cannot be encoded when it holds 3.
#[derive(Clone, Copy, serde::Deserialize)]
struct Touchy(u64);

impl Serialize for Touchy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != 3, "three refuses to be encoded");
        self.0.serialize(s)
    }
}

fn value(t: Touchy) -> u64 {
    t.0
}

#[test]
fn the_panic_reaches_the_caller_and_the_pool_goes_on() {
    let pool = Pool::new(2).unwrap();
    let before = pool.apply_async(value, Touchy(1));
    let map = catch_unwind(AssertUnwindSafe(|| pool.map(value, (0..8).map(Touchy))));
    assert!(map.is_err(), "map: the panic reaches the caller");
    let imap = catch_unwind(AssertUnwindSafe(|| pool.imap(value, (0..8).map(Touchy)).collect::<Vec<_>>()));
    assert!(imap.is_err(), "imap: the panic reaches the caller");
    let apply = catch_unwind(AssertUnwindSafe(|| pool.apply(value, Touchy(3))));
    assert!(apply.is_err(), "apply: the panic reaches the caller");
    assert_eq!(before.get().unwrap(), 1);
    assert_eq!(pool.map(value, (4..8).map(Touchy)).unwrap(), vec![4, 5, 6, 7]);
    let mut pids = pool.stats().worker_pids;
    pool.close();
    pool.join().unwrap();
    pids.extend(pool.stats().worker_pids);
    assert_gone(&pids);
}
