//! A worker that dies after taking a task and before starting it — here because the
//! task's argument is larger than the worker's address-space limit lets it map, so it
//! dies receiving it. No item was running, yet the death must be charged: the first item
//! it held is a suspect and runs again alone; dying again alone, it is charged and fails
//! with `WorkerDied`. Before, such an item was re-queued with no blame for ever (a restart
//! storm; `get` never returned), and every item after it waited.

use multiproc::{Bytes, Pool, TaskError};

multiproc::test_init!();

fn len(b: Bytes) -> usize {
    b.len()
}

#[test]
fn an_argument_the_worker_cannot_take_fails_alone_and_the_pool_goes_on() {
    let pool = Pool::builder().processes(2).max_address_space(512 << 20).build().unwrap();
    let small: Vec<_> = (0..6).map(|i| pool.apply_async(len, Bytes::from(vec![1u8; i]))).collect();
    let big = pool.apply_async(len, Bytes::from(vec![7u8; 768 << 20]));
    let after: Vec<_> = (0..6).map(|i| pool.apply_async(len, Bytes::from(vec![2u8; i]))).collect();
    match big.get() {
        Err(TaskError::WorkerDied { attempts, .. }) => assert_eq!(attempts.len(), 1, "charged once"),
        other => panic!("the big argument: {other:?}"),
    }
    for (i, h) in small.into_iter().chain(after).enumerate() {
        assert_eq!(h.get().unwrap(), i % 6, "item {i}");
    }
    let stats = pool.stats();
    assert_eq!(stats.workers_died, 2, "one death as a suspect, one charged: {stats:?}");
    assert_eq!(pool.apply(len, Bytes::from(vec![0u8; 3])).unwrap(), 3, "the pool goes on");
}
