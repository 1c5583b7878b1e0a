//! A task that calls `fork()` and returns in both processes (a C library that forks and
//! does not `exec`, say): two processes then run the worker's loop on one socket. The
//! pool takes results only in the order it sent tasks, so a second copy of a result is a
//! protocol error that ends the worker (and containment ends the copy): every item still
//! settles once, with its value (or, for the forking item, an error), nothing is left
//! running, and the pool goes on.

use multiproc::{Chunksize, MapOptions, Pool};

multiproc::test_init!();

#[allow(unsafe_code)]
fn forks_at_3(x: u64) -> u64 {
    if x == 3 {
        // SAFETY: the fault under test; this task holds no lock another thread could.
        unsafe { libc::fork() };
    }
    2 * x
}

#[test]
fn a_task_that_forks_and_returns_twice_settles_every_item_once() {
    for chunk in [1usize, 4] {
        let pool = Pool::new(1).unwrap();
        let opts = MapOptions::new().chunksize(Chunksize::Fixed(chunk));
        let outcomes = pool.map_async_with(forks_at_3, 0..40u64, &opts).get_all();
        assert_eq!(outcomes.len(), 40);
        for (x, o) in (0..40u64).zip(&outcomes) {
            assert!(o == &Ok(2 * x) || (x == 3 && o.is_err()), "item {x} (chunks of {chunk}): {o:?}");
        }
        eprintln!("chunks of {chunk}: item 3 gave {:?}", outcomes[3]);
        assert_eq!(pool.map(forks_at_3, 10..20u64).unwrap(), (10..20).map(|x| 2 * x).collect::<Vec<_>>());
        pool.close();
        pool.join().unwrap();
    }
}
