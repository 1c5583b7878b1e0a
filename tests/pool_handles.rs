//! Handles with descriptors (a `Queue`) travel to pool tasks as arguments, one per item
//! of a map too (unlike Python, where a plain queue given to a pool task is an error).

use multiproc::{Pool, Queue};

multiproc::test_init!();

fn produce((q, word): (Queue<String>, String)) -> usize {
    q.put(word.clone()).unwrap();
    word.len()
}

#[test]
fn a_queue_given_to_pool_tasks_just_works() {
    let pool = Pool::new(2).unwrap();
    let q: Queue<String> = Queue::bounded(100).unwrap();
    assert_eq!(pool.apply(produce, (q.clone(), "one".to_string())).unwrap(), 3);
    assert_eq!(q.get().unwrap(), "one");
    let words = ["i", "t", "c", "a", "s", "t"];
    let lens = pool.map(produce, words.iter().map(|w| (q.clone(), w.to_string()))).unwrap();
    assert_eq!(lens, [1; 6]);
    let mut got: Vec<String> = (0..6).map(|_| q.get().unwrap()).collect();
    got.sort();
    let mut want: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn chunks_of_items_that_carry_descriptors_still_work() {
    let pool = Pool::new(2).unwrap();
    let q: Queue<String> = Queue::bounded(100).unwrap();
    let opts = multiproc::MapOptions::new().chunksize(multiproc::Chunksize::Fixed(4));
    let items: Vec<(Queue<String>, String)> = (0..10).map(|i| (q.clone(), format!("w{i}"))).collect();
    let lens = pool.map_async_with(produce, items, &opts).get().unwrap();
    assert_eq!(lens.len(), 10);
    let mut got: Vec<String> = (0..10).map(|_| q.get().unwrap()).collect();
    got.sort();
    assert_eq!(got.len(), 10);
    assert_eq!(got[0], "w0");
}
