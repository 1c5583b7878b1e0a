//! 100 000 outstanding results cost memory, not file descriptors (alone in its test
//! binary, so no other test's pool changes the descriptor count).

use multiproc::Pool;

multiproc::test_init!();

fn double(x: u64) -> u64 {
    x * 2
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_hundred_thousand_outstanding_results_cost_no_descriptors() {
    let pool = Pool::new(2).unwrap();
    let fds_before = open_fds();
    let hs: Vec<_> = (0..100_000u64).map(|i| pool.apply_async(double, i)).collect();
    assert!(open_fds() <= fds_before + 8, "results must not hold descriptors");
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(h.get().unwrap(), 2 * i as u64);
    }
    assert_eq!(pool.stats().tasks_done, 100_000);
}
