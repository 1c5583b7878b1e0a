//! A task that overwrites its worker's claim word (the shared word that says which queued
//! tasks the driver took back: `pool/local/claim.rs`), as a stray write of a crashing C
//! library could: its worker then skips tasks nobody took back. The worker says what it
//! skips, the driver sees a skip it did not ask for and ends the worker, and every task
//! it held runs on its replacement: each settles once, with its value; none waits for ever.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use multiproc::{Pool, TaskError};

multiproc::test_init!();

/// The claim word's place in the counter page: after the item counters and the last
/// words, on a 64-byte line of its own (`protocol::SLOT_CLAIM`).
const CLAIM_WORD_OFFSET: u64 = 392 * 8;

/// Writes `skip_until = claimed + 50` into this worker's claim word, through
/// `/proc/self/mem` (as a stray write would); returns the word it found.
fn overwrite_claim_word(_: ()) -> u64 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps.lines().find(|l| l.contains("multiproc-counters")).expect("the worker's counter page");
    let start = u64::from_str_radix(line.split('-').next().unwrap(), 16).unwrap();
    let mut mem = std::fs::OpenOptions::new().read(true).write(true).open("/proc/self/mem").unwrap();
    let mut word = [0u8; 8];
    mem.seek(SeekFrom::Start(start + CLAIM_WORD_OFFSET)).unwrap();
    mem.read_exact(&mut word).unwrap();
    let found = u64::from_le_bytes(word);
    let claimed = found as u32;
    let overwritten = (u64::from(claimed.wrapping_add(50)) << 32) | u64::from(claimed);
    mem.seek(SeekFrom::Start(start + CLAIM_WORD_OFFSET)).unwrap();
    mem.write_all(&overwritten.to_le_bytes()).unwrap();
    found
}

fn double(x: u64) -> u64 {
    x * 2
}

/// Long enough for any start on a loaded machine; a hang fails the test instead of
/// holding it.
const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn tasks_skipped_by_an_overwritten_claim_word_run_elsewhere() {
    let pool = Pool::builder().processes(1).build().unwrap();
    assert_eq!(pool.apply(double, 1).unwrap(), 2);
    let found = pool.apply(overwrite_claim_word, ()).unwrap();
    // Claimed and skip_until agree in a word nobody took anything back from.
    assert_eq!(found as u32, (found >> 32) as u32, "{found:#x}");
    let handles: Vec<_> = (0..20u64).map(|i| pool.apply_async(double, i)).collect();
    for (i, h) in handles.into_iter().enumerate() {
        match h.get_timeout(PATIENCE) {
            Ok(v) => assert_eq!(v, 2 * i as u64),
            Err(TaskError::WaitTimeout { .. }) => panic!("task {i} never settled"),
            Err(e) => panic!("task {i}: {e}"),
        }
    }
    let stats = pool.stats();
    assert!(stats.workers_started >= 2, "the worker with the overwritten word was replaced: {stats:?}");
    assert_eq!(stats.tasks_done, 22, "{stats:?}");
    pool.close();
    pool.join().unwrap();
}
