//! Arguments and results far over the broker's message limit (1 MiB, nats-server's
//! default) travel through the pool's object store, transparently: a 64 MiB argument and
//! a 64 MiB result come back exact, a map mixing large and small items gets every item
//! back in order, and once the pool is joined the object store holds nothing.

use std::time::{Duration, Instant};

use multiproc_nats::testing::NatsServer;

mod common;

multiproc_nats::test_init!();

const ACK_WAIT: Duration = Duration::from_secs(30);

/// 64 MiB: 64 times the broker's limit.
const LARGE: usize = 64 << 20;

/// A position-sensitive checksum (FNV-1a, 64 bits).
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// `len` bytes made from `seed`, the same on every machine: run as a task, so that a
/// result as large travels back.
fn made((seed, len): (u64, usize)) -> Vec<u8> {
    common::pseudo_random_bytes(seed, len)
}

/// What a task was given: its length and checksum.
fn digest(data: Vec<u8>) -> (usize, u64) {
    (data.len(), checksum(&data))
}

/// The bytes it was given, reversed: as large a result as the argument.
fn reversed(mut data: Vec<u8>) -> Vec<u8> {
    data.reverse();
    data
}

#[test]
fn arguments_and_results_of_64_mib_come_back_exact_and_leave_nothing_behind() {
    let Some(server) = NatsServer::start("large-payloads") else { return };
    let _worker = common::start_worker(&server, "large", 2, ACK_WAIT);
    let pool = common::cluster_pool(&server, "large", ACK_WAIT, 2);

    let argument = made((1, LARGE));
    let expected = (argument.len(), checksum(&argument));
    let started = Instant::now();
    assert_eq!(pool.apply(digest, argument).unwrap(), expected, "the 64 MiB argument arrived whole");
    eprintln!("a 64 MiB argument to its worker and back: {:?}", started.elapsed());

    let started = Instant::now();
    let result = pool.apply(made, (2, LARGE)).unwrap();
    eprintln!("a 64 MiB result back from its worker: {:?}", started.elapsed());
    assert_eq!(result.len(), LARGE);
    assert_eq!(checksum(&result), checksum(&made((2, LARGE))), "the 64 MiB result came back exact");
    drop(result);

    // Several large items in one map, both ways, among small ones, each in its place.
    let items: Vec<Vec<u8>> = [3 << 20, 10, (2 << 20) + 1, 0, 5 << 20, 1 << 20]
        .iter()
        .enumerate()
        .map(|(i, &len)| made((10 + i as u64, len)))
        .collect();
    let started = Instant::now();
    let back = pool.map(reversed, items.clone()).unwrap();
    eprintln!("a map of 6 items (11 MiB) both ways: {:?}", started.elapsed());
    assert_eq!(back.len(), items.len());
    for (i, (sent, got)) in items.iter().zip(&back).enumerate() {
        let mut want = sent.clone();
        want.reverse();
        assert!(*got == want, "item {i} ({} bytes) came back exact", sent.len());
    }

    pool.close();
    pool.join().unwrap();
    assert_eq!(
        common::objects_left_behind(&server, &common::queue("large", ACK_WAIT)),
        (0, 0, vec![]),
        "nothing left behind"
    );
}
