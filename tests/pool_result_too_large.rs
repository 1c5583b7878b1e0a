//! A result larger than the pool's frame limit: the item fails with a codec error that
//! says why, its worker goes on, and nothing else is lost (finding 1 of the accounting
//! issue: the worker died and the item was re-run forever). The limit is set small here
//! with `max_frame_size`; the default one (2 GiB and more) takes the same path.

use multiproc::{Pool, TaskError};

multiproc::test_init!();

const LIMIT: u32 = 256 << 10;

/// `n` bytes, but item 13 returns more than the limit.
fn blob(i: usize) -> Vec<u8> {
    let n = if i == 13 { 2 * LIMIT as usize } else { i };
    vec![i as u8; n]
}

fn check(results: &[Result<Vec<u8>, TaskError>]) {
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(v) => assert!(i != 13 && v.len() == i, "item {i}: {} bytes", v.len()),
            Err(TaskError::Codec { message, .. }) => {
                assert_eq!(i, 13, "item {i}: {message}");
                assert!(message.contains("cannot be sent"), "{message}");
            }
            Err(e) => panic!("item {i}: {e}"),
        }
    }
}

fn pool() -> Pool {
    Pool::builder().processes(2).max_frame_size(LIMIT).build().unwrap()
}

#[test]
fn apply_async_and_apply() {
    let pool = pool();
    let results: Vec<_> = (0..20).map(|i| pool.apply_async(blob, i)).collect::<Vec<_>>();
    check(&results.into_iter().map(|h| h.get()).collect::<Vec<_>>());
    check(&(0..20).map(|i| pool.apply(blob, i)).collect::<Vec<_>>());
    let stats = pool.stats();
    assert_eq!(stats.workers_died, 0, "the workers go on: {stats:?}");
    assert_eq!(stats.workers_started, 2);
}

#[test]
fn map_one_item_per_task() {
    let pool = pool();
    let opts = multiproc::MapOptions::new().chunksize(multiproc::Chunksize::Fixed(1));
    check(&pool.map_async_with(blob, 0..20, &opts).get_all());
    assert_eq!(pool.stats().workers_died, 0);
}

#[test]
fn in_a_chunk_only_the_value_too_large_fails() {
    let pool = pool();
    let opts = multiproc::MapOptions::new().chunksize(multiproc::Chunksize::Fixed(4));
    check(&pool.map_async_with(blob, 0..20, &opts).get_all());
    assert_eq!(pool.stats().workers_died, 0);
}

/// Values each under the limit, too large together for one result.
fn third_of_limit(i: usize) -> Vec<u8> {
    vec![i as u8; LIMIT as usize / 3]
}

#[test]
fn a_chunk_too_large_together_fails_each_of_its_items_with_the_reason() {
    let pool = pool();
    let opts = multiproc::MapOptions::new().chunksize(multiproc::Chunksize::Fixed(4));
    let results = pool.map_async_with(third_of_limit, 0..8, &opts).get_all();
    for r in &results {
        assert!(matches!(r, Err(TaskError::Codec { message, .. }) if message.contains("cannot be sent")), "{r:?}");
    }
    let opts = multiproc::MapOptions::new().chunksize(multiproc::Chunksize::Fixed(2));
    let results = pool.map_async_with(third_of_limit, 0..8, &opts).get_all();
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|v| v.len() == LIMIT as usize / 3)), "two fit");
    assert_eq!(pool.stats().workers_died, 0);
}

#[test]
fn an_argument_too_large_fails_before_it_is_sent() {
    let pool = pool();
    fn len(v: Vec<u8>) -> usize {
        v.len()
    }
    let e = pool.apply(len, vec![0u8; 2 * LIMIT as usize]).unwrap_err();
    assert!(matches!(e, TaskError::Codec { .. }), "{e}");
    assert_eq!(pool.apply(len, vec![0u8; 10]).unwrap(), 10);
}
