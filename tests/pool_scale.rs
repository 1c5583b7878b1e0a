//! Several threads at once, large payloads both ways.

use std::sync::Arc;

use multiproc::Pool;

multiproc::test_init!();

fn double(x: u64) -> u64 {
    x * 2
}

/// A large buffer in, a large buffer out (a String is encoded in one go).
fn shout(mut s: String) -> String {
    s.push('!');
    s
}

#[test]
fn several_threads_submit_at_once() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    assert_eq!(pool.apply(double, t * 1000 + i).unwrap(), 2 * (t * 1000 + i));
                }
                let hs: Vec<_> = (0..200).map(|i| pool.apply_async(double, i)).collect();
                for (i, h) in hs.into_iter().enumerate() {
                    assert_eq!(h.get().unwrap(), 2 * i as u64);
                }
                assert_eq!(pool.map(double, 0..300).unwrap()[299], 598);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn large_arguments_and_results_with_more_tasks_than_workers_do_not_deadlock() {
    // Far beyond any socket buffer; 256 MiB behaves the same, only slower in debug builds.
    const MIB: usize = 1 << 20;
    let pool = Pool::new(2).unwrap();
    let inputs: Vec<String> = (0..6u8).map(|i| char::from(b'a' + i).to_string().repeat(8 * MIB)).collect();
    let hs: Vec<_> = inputs.iter().map(|s| pool.apply_async(shout, s.clone())).collect();
    for (h, s) in hs.into_iter().zip(&inputs) {
        let r = h.get().unwrap();
        assert_eq!(r.len(), s.len() + 1);
        assert!(r.starts_with(&s[..10]) && r.ends_with('!'));
    }
    let back = pool.map(shout, inputs).unwrap();
    assert_eq!(back.len(), 6);
    assert!(back[5].starts_with("fff") && back[5].ends_with('!'));
}

fn reverse(mut b: multiproc::Bytes) -> multiproc::Bytes {
    b.reverse();
    b
}

#[test]
fn quarter_gigabyte_arguments_and_results_with_more_tasks_than_workers() {
    // The size: 256 MiB each way, three tasks for two workers.
    const SIZE: usize = 256 << 20;
    let pool = Pool::new(2).unwrap();
    let hs: Vec<_> = (0..3u8)
        .map(|i| {
            let mut v = vec![i; SIZE];
            v[0] = 0xff;
            pool.apply_async(reverse, multiproc::Bytes::from(v))
        })
        .collect();
    for (i, h) in hs.into_iter().enumerate() {
        let r = h.get().unwrap();
        assert_eq!(r.len(), SIZE);
        assert_eq!((r[0], r[SIZE - 1]), (i as u8, 0xff));
    }
}

fn fingerprint(b: multiproc::Bytes) -> (usize, u64) {
    (b.len(), b.iter().enumerate().map(|(i, &x)| (i as u64 + 1) * x as u64).sum())
}

#[test]
fn many_large_items_in_reused_buffers_arrive_each_with_its_own_bytes() {
    // Bodies past the spill size travel in memfds the pool fills again: every item must
    // still see exactly its own bytes, of varying sizes.
    let pool = Pool::new(2).unwrap();
    let inputs: Vec<multiproc::Bytes> = (0..40usize)
        .map(|i| (0..(300 << 10) + i * 9_000).map(|k| (k * 7 + i) as u8).collect::<Vec<u8>>().into())
        .collect();
    let want: Vec<(usize, u64)> = inputs.iter().cloned().map(fingerprint).collect();
    let opts = multiproc::MapOptions::new().chunksize(multiproc::Chunksize::Fixed(1));
    assert_eq!(pool.map_async_with(fingerprint, inputs.clone(), &opts).get().unwrap(), want);
    assert_eq!(pool.map(fingerprint, inputs).unwrap(), want);
}

static KEPT: std::sync::Mutex<Vec<multiproc::Bytes>> = std::sync::Mutex::new(Vec::new());

fn keep(b: multiproc::Bytes) -> (usize, u64) {
    let f = fingerprint(b.clone());
    KEPT.lock().unwrap().push(b);
    f
}

fn kept(_: ()) -> Vec<(usize, u64)> {
    KEPT.lock().unwrap().iter().cloned().map(fingerprint).collect()
}

#[test]
fn large_buffers_a_task_keeps_stay_intact_while_later_tasks_come() {
    // A worker's `Bytes` may share the memory its task arrived in; one the function keeps
    // must not change when the next tasks arrive.
    let pool = Pool::new(1).unwrap();
    let inputs: Vec<multiproc::Bytes> = (0..12u8).map(|i| vec![i; 400 << 10].into()).collect();
    let want: Vec<(usize, u64)> = inputs.iter().cloned().map(fingerprint).collect();
    let opts = multiproc::MapOptions::new().chunksize(multiproc::Chunksize::Fixed(1));
    assert_eq!(pool.map_async_with(keep, inputs.clone(), &opts).get().unwrap(), want);
    assert_eq!(pool.map_async_with(fingerprint, inputs, &opts).get().unwrap(), want);
    assert_eq!(pool.apply(kept, ()).unwrap(), want);
}
