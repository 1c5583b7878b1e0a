//! Workers are recycled after max tasks and past a memory limit; a hard address-space
//! cap turns a runaway allocation into that task's error.

use multiproc::{Pool, TaskError};

multiproc::test_init!();

fn pid(_: u64) -> u32 {
    std::process::id()
}

fn hog(mib: usize) -> usize {
    let mut v = vec![0u8; mib << 20];
    for i in (0..v.len()).step_by(4096) {
        v[i] = 1;
    }
    // Leak it: the worker keeps the memory, as a leaking library would. (`black_box`:
    // an optimised build would otherwise drop the unused allocation altogether.)
    std::mem::forget(std::hint::black_box(v));
    mib
}

fn runaway(gib: usize) -> usize {
    // `black_box`: an optimised build would otherwise never allocate.
    let v = std::hint::black_box(vec![1u8; gib << 30]);
    v.len()
}

static INITIALIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn mark(_: ()) {
    INITIALIZED.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn was_initialized(_: u64) -> (bool, u32) {
    (INITIALIZED.load(std::sync::atomic::Ordering::SeqCst), std::process::id())
}

fn hello(tag: String) {
    println!("{tag} {}", multiproc::current_process().name());
}

#[test]
fn max_tasks_per_child_replaces_workers_and_reruns_the_initializer() {
    let pool =
        Pool::builder().processes(2).max_tasks_per_child(2).initializer(hello, "Starting".to_string()).build().unwrap();
    let pids = pool
        .map_async_with(pid, 0..10, &multiproc::MapOptions::new().chunksize(multiproc::Chunksize::Fixed(1)))
        .get()
        .unwrap();
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 5, "10 tasks, 2 per worker: at least 5 workers, got {pids:?}");
    for p in &distinct {
        assert!(pids.iter().filter(|&q| q == p).count() <= 2);
    }
    pool.close();
    pool.join().unwrap();
    let s = pool.stats();
    assert!(s.recycled_max_tasks >= 4, "{s:?}");
    assert_eq!(s.workers_died, 0, "{s:?}");
    assert_eq!(s.workers_alive, 0);
}

#[test]
fn a_worker_over_its_memory_limit_is_recycled_and_the_result_kept() {
    let pool = Pool::builder().processes(1).max_memory_per_child(64 << 20).build().unwrap();
    let before = pool.apply(pid, 0).unwrap();
    assert_eq!(pool.apply(hog, 128).unwrap(), 128, "the result of the task that grew is kept");
    let after = pool.apply(pid, 0).unwrap();
    assert_ne!(before, after, "a fresh worker took over");
    let s = pool.stats();
    assert_eq!(s.recycled_memory, 1, "{s:?}");
    assert_eq!(s.workers_died, 0, "{s:?}");
}

#[test]
fn an_address_space_cap_fails_the_runaway_task_only() {
    let pool = Pool::builder().processes(1).max_address_space(2 << 30).build().unwrap();
    match pool.apply(runaway, 8) {
        Err(TaskError::WorkerDied { signal, hint, .. }) => {
            assert_eq!(signal, Some(6), "an allocation failure aborts");
            assert!(hint.unwrap().contains("address-space"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(hog, 16).unwrap(), 16);
}

#[test]
fn the_initializer_runs_in_every_replacement() {
    let pool = Pool::builder().processes(2).max_tasks_per_child(1).initializer(mark, ()).build().unwrap();
    let seen = pool.map(was_initialized, 0..8).unwrap();
    assert!(seen.iter().all(|(init, _)| *init), "{seen:?}");
    let mut pids: Vec<u32> = seen.iter().map(|(_, p)| *p).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 8, "one task per worker");
}

#[cfg(feature = "progress")]
#[test]
fn a_progress_bar_does_not_change_results() {
    let pool = Pool::new(2).unwrap();
    let opts = multiproc::MapOptions::new().progress(true);
    assert_eq!(pool.map_async_with(pid, 0..20, &opts).get().unwrap().len(), 20);
    assert_eq!(pool.imap_with(pid, 0..20, &opts).count(), 20);
}
