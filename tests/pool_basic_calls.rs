//! Every call of the pool, with its ordering and chunking.

use multiproc::{Chunksize, MapOptions, Pool, TaskError};

multiproc::test_init!();

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn add3(a: u64, b: u64, c: u64) -> u64 {
    a + b + c
}

fn six(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8) -> u32 {
    [a, b, c, d, e, f].iter().map(|&x| x as u32).sum()
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn name(_: ()) -> String {
    multiproc::current_process().name().to_string()
}

#[test]
fn apply_and_apply_async() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
    let h = pool.apply_async(square, 8);
    assert_eq!(h.get().unwrap(), 64);
    let hs: Vec<_> = (0..50).map(|i| pool.apply_async(square, i)).collect();
    let got: Vec<u64> = hs.into_iter().map(|h| h.get().unwrap()).collect();
    assert_eq!(got, (0..50).map(|i| i * i).collect::<Vec<_>>());
}

#[test]
fn a_closure_is_a_task() {
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.apply(|s: String| s.len(), "four".to_string()).unwrap(), 4);
    let f: fn(u64) -> u64 = square;
    assert_eq!(pool.apply(f, 3).unwrap(), 9);
}

#[test]
fn map_family_keeps_input_order() {
    let pool = Pool::new(3).unwrap();
    let want: Vec<u64> = (0..200).map(|i| i * i).collect();
    assert_eq!(pool.map(square, 0..200).unwrap(), want);
    assert_eq!(pool.map_async(square, 0..200).get().unwrap(), want);
    let all = pool.map_results(square, 0..200);
    assert_eq!(all.into_iter().map(Result::unwrap).collect::<Vec<_>>(), want);
    let im: Vec<u64> = pool.imap(square, 0..200).map(Result::unwrap).collect();
    assert_eq!(im, want);
    let mut un: Vec<u64> = pool.imap_unordered(square, 0..200).map(Result::unwrap).collect();
    un.sort();
    assert_eq!(un, want);
    assert_eq!(pool.map(square, Vec::<u64>::new()).unwrap(), Vec::<u64>::new());
    assert_eq!(pool.imap(square, Vec::<u64>::new()).count(), 0);
}

#[test]
fn chunk_sizes_all_give_the_same_results() {
    let pool = Pool::new(2).unwrap();
    let want: Vec<u64> = (0..300).map(|i| i * i).collect();
    for c in [Chunksize::Default, Chunksize::Fixed(1), Chunksize::Fixed(7), Chunksize::Fixed(1000), Chunksize::Adaptive]
    {
        let opts = MapOptions::new().chunksize(c);
        assert_eq!(pool.map_async_with(square, 0..300, &opts).get().unwrap(), want, "{c:?}");
        let v: Vec<u64> = pool.imap_with(square, 0..300, &opts).map(Result::unwrap).collect();
        assert_eq!(v, want, "imap {c:?}");
        let mut u: Vec<u64> = pool.imap_unordered_with(square, 0..300, &opts).map(Result::unwrap).collect();
        u.sort();
        assert_eq!(u, want, "imap_unordered {c:?}");
    }
}

#[test]
fn starmap_takes_two_to_six_arguments() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.starmap(add, (0..10).map(|i| (i, 10 * i))).unwrap(), (0..10).map(|i| 11 * i).collect::<Vec<_>>());
    assert_eq!(pool.starmap(add3, [(1, 2, 3)]).unwrap(), [6]);
    assert_eq!(pool.starmap_async(six, [(1, 2, 3, 4, 5, 6), (0, 0, 0, 0, 0, 1)]).get().unwrap(), [21, 1]);
}

#[test]
fn workers_are_named_pool_workers_and_are_other_processes() {
    let pool = Pool::new(2).unwrap();
    let names = pool.map(name, vec![(); 20]).unwrap();
    for n in &names {
        assert!(n == "PoolWorker-1" || n == "PoolWorker-2", "{n}");
    }
    let pids = pool.map(pid, vec![(); 20]).unwrap();
    assert!(pids.iter().all(|&p| p != std::process::id()));
}

#[test]
fn a_value_that_does_not_serialize_is_an_error_of_its_own() {
    struct Refuses;
    impl serde::Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }
    impl<'de> serde::Deserialize<'de> for Refuses {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            <()>::deserialize(d).map(|_| Refuses)
        }
    }
    fn takes(_: Refuses) -> u8 {
        1
    }
    let pool = Pool::new(1).unwrap();
    match pool.apply(takes, Refuses) {
        Err(TaskError::Codec { message, task }) => {
            assert!(message.contains("Refuses"), "{message}");
            assert!(task.contains("takes"), "{task}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
}
