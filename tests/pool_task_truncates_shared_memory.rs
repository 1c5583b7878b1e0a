//! A worker and its pool share memory: the page of counters that says which item the
//! worker runs (a memfd the pool creates, maps, and reads when the worker dies), and
//! the memfds large arguments and results travel in. A task that truncated every file
//! it had open (a C library shrinking a descriptor number it no longer owns, say) shrank
//! the counter page under the pool's mapping: the pool's next read of it faulted
//! (SIGBUS) and killed the caller's process. The page is now sealed at its size before
//! the worker sees it (and a worker refuses a page that is not): the truncation fails
//! in the task. The memfds of arguments and results are closed in the worker before a
//! task runs, so a task finds none of them to shrink; both are checked here, with a
//! result the caller still holds zero-copy and an argument the pool's buffer carried.

use std::path::PathBuf;

use multiproc::{Bytes, Pool};

multiproc::test_init!();

fn large((seed, len): (u8, usize)) -> Bytes {
    Bytes::from(vec![seed; len])
}

/// Truncates every shared-memory file this process has open to nothing; says how many
/// it could truncate and how many it found.
fn truncate_shared_memory(_: ()) -> (usize, usize) {
    let (mut truncated, mut found) = (0, 0);
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let path: PathBuf = entry.path();
        let Ok(target) = std::fs::read_link(&path) else { continue };
        if !target.to_string_lossy().starts_with("/memfd:") {
            continue;
        }
        found += 1;
        if std::fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(0)).is_ok() {
            truncated += 1;
        }
    }
    (truncated, found)
}

#[test]
fn a_task_cannot_shrink_the_memory_a_result_the_caller_holds_lives_in() {
    let pool = Pool::new(1).unwrap();
    // Sizes that travel in a reused buffer and in a memfd of their own.
    for len in [64 << 10, 1 << 20, 3 << 20, 16 << 20] {
        let held = pool.apply(large, (7, len)).unwrap();
        assert_eq!(held.len(), len);
        let (truncated, found) = pool.apply(truncate_shared_memory, ()).unwrap();
        eprintln!("{len} bytes: the worker had {found} memfds open; {truncated} could be truncated");
        assert_eq!(truncated, 0, "a memfd the pool maps could be shrunk");
        // Read after the attempt: a shrunk mapping would fault here.
        assert!(held.iter().all(|&b| b == 7));
    }
    assert_eq!(pool.apply(large, (9, 1 << 20)).unwrap().len(), 1 << 20, "the pool goes on");
}

/// Truncates the shared memory it has open, while its own argument lives in some.
fn truncate_with_a_large_argument(arg: Bytes) -> (usize, usize, usize) {
    let (truncated, found) = truncate_shared_memory(());
    (truncated, found, arg.len())
}

#[test]
fn a_task_cannot_shrink_the_memory_its_argument_came_in() {
    let pool = Pool::new(1).unwrap();
    for len in [64 << 10, 1 << 20, 3 << 20, 16 << 20] {
        for round in 0..3 {
            let (truncated, found, got) =
                pool.apply(truncate_with_a_large_argument, Bytes::from(vec![1u8; len])).unwrap();
            eprintln!("{len} bytes, round {round}: the worker had {found} memfds open; {truncated} could be truncated");
            assert_eq!((truncated, got), (0, len), "a memfd the pool writes could be shrunk");
        }
    }
}
