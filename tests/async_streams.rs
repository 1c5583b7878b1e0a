//! `IMapIter`, `imap_unordered` and `as_completed` as `futures_core::Stream`s, consumed on
//! a current-thread tokio runtime while a ticker task runs beside them. The tasks wait for
//! an event only the ticker sets: a stream that blocked the runtime's one thread would
//! stop the ticker and the test would never end.
#![cfg(feature = "stream")]

#[path = "common/ticker.rs"]
mod ticker;

use futures_util::{Stream, StreamExt};
use multiproc::{Event, Pool, as_completed};

multiproc::test_init!();

fn wait_then_square((go, x): (Event, u64)) -> u64 {
    go.wait().unwrap();
    x * x
}

#[test]
fn imap_stream_waits_without_blocking_the_runtime() {
    let pool = Pool::new(2).unwrap();
    let go = Event::new().unwrap();
    let rt = ticker::runtime();
    let (got, before, after) = rt.block_on(async {
        let ticks = ticker::spawn_ticker(go.clone(), 20);
        let stream = pool.imap(wait_then_square, (0..6u64).map(|x| (go.clone(), x))).into_stream();
        let before = ticks.now();
        let got: Vec<u64> = stream.map(Result::unwrap).collect().await;
        (got, before, ticks.now())
    });
    assert_eq!(got, [0, 1, 4, 9, 16, 25]);
    assert!(after >= 20 && after > before, "the ticker ran while the stream waited: {before} -> {after}");
}

#[test]
fn imap_unordered_stream_gives_every_outcome_once() {
    let pool = Pool::new(3).unwrap();
    let go = Event::new().unwrap();
    let rt = ticker::runtime();
    let mut got = rt.block_on(async {
        ticker::spawn_ticker(go.clone(), 10);
        let stream = pool.imap_unordered(wait_then_square, (0..9u64).map(|x| (go.clone(), x))).into_stream();
        stream.map(Result::unwrap).collect::<Vec<u64>>().await
    });
    got.sort();
    assert_eq!(got, (0..9u64).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn as_completed_stream_yields_handles_as_they_end() {
    let pool = Pool::new(2).unwrap();
    let (early, late) = (Event::new().unwrap(), Event::new().unwrap());
    let rt = ticker::runtime();
    let order = rt.block_on(async {
        ticker::spawn_ticker(early.clone(), 10);
        // The late task is released by the consumer itself, once the early one has come.
        let handles = vec![
            pool.apply_async(wait_then_square, (late.clone(), 3)),
            pool.apply_async(wait_then_square, (early.clone(), 2)),
        ];
        let mut done = as_completed(handles).into_stream();
        assert_eq!(done.size_hint(), (2, Some(2)));
        let mut order = Vec::new();
        while let Some(h) = done.next().await {
            order.push(h.await.unwrap());
            late.set();
        }
        order
    });
    assert_eq!(order, [4, 9]);
}
