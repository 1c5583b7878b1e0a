//! `Pool::map_with`: `map` with options; here one item per task and a timeout that ends
//! the task of a hanging item, which fails the map with `Timeout`; the pool goes on.

use std::time::Duration;

use multiproc::{Chunksize, MapOptions, Pool, TaskError};

multiproc::test_init!();

fn hang_on_zero(x: u64) -> u64 {
    if x == 0 {
        loop {
            std::thread::park();
        }
    }
    x * 2
}

#[test]
fn map_with_applies_its_options() {
    let pool = Pool::new(2).unwrap();
    let one_each = MapOptions::new().chunksize(Chunksize::Fixed(1));
    assert_eq!(pool.map_with(hang_on_zero, 1..5, &one_each).unwrap(), [2, 4, 6, 8]);
    let bounded = one_each.timeout(Duration::from_millis(100));
    let r = pool.map_with(hang_on_zero, [3, 0, 1], &bounded);
    assert!(matches!(r, Err(TaskError::Timeout { .. })), "{r:?}");
    assert_eq!(pool.map_with(hang_on_zero, [5], &MapOptions::new()).unwrap(), [10]);
}
