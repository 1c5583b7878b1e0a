//! A map's items are cut into tasks from marks kept every few items (not an offset per
//! item): items of very different sizes, some that fail to encode (which split the
//! input into parts), every chunk size from 1 to more than a mark's stride, and a worker
//! killed in the middle of a chunk. Every item's result is its own, in its place, once.

use multiproc::{Chunksize, MapOptions, Pool, TaskError};
use serde::{Deserialize, Serialize, Serializer};

multiproc::test_init!();

/// An item of `len` bytes that refuses to encode when `refuse` is set.
#[derive(Deserialize)]
struct Item {
    index: u64,
    filler: Vec<u8>,
    refuse: bool,
}

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.refuse {
            return Err(serde::ser::Error::custom("this item refuses to encode"));
        }
        (self.index, &self.filler, self.refuse).serialize(s)
    }
}

fn item(i: u64) -> Item {
    // Sizes from 0 to a few kilobytes, and one of 300 KiB (a spilled task body).
    let len = if i == 77 { 300 << 10 } else { ((i * 37) % 3000) as usize };
    Item { index: i, filler: vec![(i % 251) as u8; len], refuse: i % 41 == 40 }
}

/// The item's index and a checksum of its filler; item 123 kills its worker.
fn checked(it: Item) -> (u64, u64) {
    if it.index == 123 {
        std::process::abort();
    }
    (it.index, it.filler.iter().map(|b| *b as u64).sum())
}

#[test]
fn every_item_gets_its_own_result_whatever_the_sizes_and_chunks() {
    let pool = Pool::new(2).unwrap();
    let n = 300u64;
    for chunk in [1, 3, 16, 17, 40] {
        let opts = MapOptions::new().chunksize(Chunksize::Fixed(chunk));
        let results = pool.map_async_with(checked, (0..n).map(item), &opts).get_all();
        assert_eq!(results.len(), n as usize);
        for (i, r) in results.iter().enumerate() {
            let i = i as u64;
            match r {
                _ if i % 41 == 40 => {
                    assert!(
                        matches!(r, Err(TaskError::Codec { message, .. }) if message.contains("cannot encode")),
                        "{i}: {r:?}"
                    )
                }
                _ if i == 123 => assert!(r.is_err(), "item {i} killed its worker: {r:?}"),
                Ok((index, sum)) => {
                    let it = item(i);
                    assert_eq!((*index, *sum), (i, it.filler.iter().map(|b| *b as u64).sum()), "chunk {chunk}");
                }
                Err(e) => panic!("chunk {chunk}, item {i}: {e}"),
            }
        }
    }
}
