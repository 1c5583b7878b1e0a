//! A result type whose `Deserialize` panics in the parent: that one item fails with a
//! codec error naming the panic, and everything else in flight, and the pool, go on
//! (finding 2 of the accounting issue: the driver thread died, and `get` hung for every
//! task in flight).

use multiproc::{Chunksize, MapOptions, Pool, TaskError};
use serde::{Deserialize, Deserializer, Serialize};

multiproc::test_init!();

/// The value 13 cannot be decoded: its `Deserialize` panics (only the parent decodes
/// results).
#[derive(Debug, PartialEq, Serialize)]
struct Unlucky(u64);

impl<'de> Deserialize<'de> for Unlucky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        assert!(n != 13, "thirteen cannot be decoded");
        Ok(Unlucky(n))
    }
}

fn wrap(x: u64) -> Unlucky {
    Unlucky(x)
}

fn is_the_decode_panic(r: &Result<Unlucky, TaskError>) -> bool {
    matches!(r, Err(TaskError::Codec { message, .. }) if message.contains("thirteen cannot be decoded"))
}

fn check_in_order(results: &[Result<Unlucky, TaskError>]) {
    for (i, r) in results.iter().enumerate() {
        if i == 13 {
            assert!(is_the_decode_panic(r), "item 13: {r:?}");
        } else {
            assert_eq!(r.as_ref().ok(), Some(&Unlucky(i as u64)), "item {i}");
        }
    }
}

#[test]
fn apply_async_settles_the_one_item_and_the_others_in_flight() {
    let pool = Pool::new(2).unwrap();
    let handles: Vec<_> = (0..40).map(|i| pool.apply_async(wrap, i)).collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.get()).collect();
    check_in_order(&results);
    assert_eq!(pool.apply(wrap, 5).unwrap(), Unlucky(5), "the pool goes on");
}

#[test]
fn apply_on_the_callers_thread_gets_the_codec_error() {
    let pool = Pool::new(1).unwrap();
    assert!(is_the_decode_panic(&pool.apply(wrap, 13)));
    assert_eq!(pool.apply(wrap, 14).unwrap(), Unlucky(14));
}

#[test]
fn map_results_settles_every_item() {
    let pool = Pool::new(2).unwrap();
    for chunk in [1, 4, 40] {
        let opts = MapOptions::new().chunksize(Chunksize::Fixed(chunk));
        let results = pool.map_async_with(wrap, 0..40, &opts).get_all();
        assert_eq!(results.len(), 40);
        check_in_order(&results);
    }
}

#[test]
fn imap_and_imap_unordered_settle_every_item() {
    let pool = Pool::new(2).unwrap();
    let ordered: Vec<_> = pool.imap(wrap, 0..40).collect();
    check_in_order(&ordered);
    let mut unordered: Vec<_> = pool.imap_unordered(wrap, 0..40).collect();
    assert_eq!(unordered.len(), 40);
    let failed = unordered.iter().filter(|r| is_the_decode_panic(r)).count();
    assert_eq!(failed, 1);
    unordered.retain(|r| r.is_ok());
    let mut values: Vec<u64> = unordered.into_iter().map(|r| r.unwrap().0).collect();
    values.sort();
    assert_eq!(values, (0..40).filter(|&i| i != 13).collect::<Vec<_>>());
}
