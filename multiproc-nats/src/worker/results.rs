//! A task's results on their way to its client: cut into messages the broker takes, and
//! stored in the pool's result stream, where the client takes them.
//!
//! A task's results go back in as many messages as the broker's size limit needs; an
//! item whose result alone is too large fails with `TooLarge`, the others stand.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::envelope::{HEADER_ROOM, ItemResults, Outcome, PROTOCOL, RanOn, RemoteError, ResultHead};

/// Room for a result head (the worker's host name, at most a few hundred bytes).
const HEAD_ROOM: usize = 1024;

/// How storing a result for its client went.
pub(super) enum Delivery {
    Confirmed,
    Abandoned(String),
}

/// The result messages of task `task_id` (its `delivery`-th delivery, run on `ran_on`)
/// under the broker's `max_payload` (0: no limit): its items' outcomes, in as many
/// messages as the limit needs. An item whose outcome alone is over the limit fails with
/// `TooLarge`.
pub(super) fn result_parts(
    ran_on: &RanOn,
    max_payload: usize,
    task_id: u64,
    delivery: u64,
    results: &ItemResults,
) -> Vec<Bytes> {
    let room = if max_payload == 0 { usize::MAX } else { max_payload.saturating_sub(HEADER_ROOM + HEAD_ROOM) };
    let message = |first: usize, count: usize, entries: &[u8]| {
        let outcome = Outcome::Items { first: first as u32, count: count as u32 };
        let head = ResultHead { version: PROTOCOL, task_id, ran_on: ran_on.clone(), delivery, outcome };
        Bytes::from(head.encode(entries))
    };
    let mut parts = Vec::new();
    let mut first = 0;
    while first < results.len() {
        let (end, size) = fitting_run(results, first, room);
        if size > room {
            let mut alone = ItemResults::new();
            alone.push(Err(&RemoteError::TooLarge { len: size as u64, max: max_payload as u64 }));
            parts.push(message(first, 1, alone.entries(0..1)));
        } else {
            parts.push(message(first, end - first, results.entries(first..end)));
        }
        first = end;
    }
    parts
}

/// The longest run of entries from `first` within `room` bytes (at least one entry):
/// where it ends, and its size.
fn fitting_run(results: &ItemResults, first: usize, room: usize) -> (usize, usize) {
    let (mut end, mut size) = (first, 0);
    while end < results.len() && (end == first || size + results.entry_len(end) <= room) {
        size += results.entry_len(end);
        end += 1;
    }
    (end, size)
}

/// The message refusing a task: its error, for its client.
pub(super) fn refusal(ran_on: &RanOn, task_id: u64, delivery: u64, error: RemoteError) -> Vec<Bytes> {
    let head =
        ResultHead { version: PROTOCOL, task_id, ran_on: ran_on.clone(), delivery, outcome: Outcome::Failed(error) };
    vec![Bytes::from(head.encode(&[]))]
}

/// Stores a task's result messages in the pool's result stream, on their client's
/// subject, where the client takes them (now, or when it is back from a disconnection);
/// retries while the broker does not confirm (it may be restarting) for up to `patience`.
pub(super) async fn deliver(
    js: async_nats::jetstream::Context,
    key: u64,
    subject: String,
    parts: Vec<Bytes>,
    patience: Duration,
) -> (u64, Delivery) {
    let started = Instant::now();
    for part in parts {
        let mut backoff = Duration::from_millis(20);
        loop {
            let stored = match js.publish(subject.clone(), part.clone()).await {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match stored {
                Ok(()) => break,
                Err(e) => {
                    if started.elapsed() >= patience {
                        return (key, Delivery::Abandoned(format!("storing a result on {subject}: {e}")));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
    (key, Delivery::Confirmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran_on() -> RanOn {
        RanOn { host: "h".into(), worker_pid: 1, process_pid: Some(2) }
    }

    fn heads(parts: &[Bytes]) -> Vec<(Outcome, Vec<u8>)> {
        parts
            .iter()
            .map(|p| {
                let (head, rest) = ResultHead::decode(p).unwrap();
                (head.outcome, rest.to_vec())
            })
            .collect()
    }

    #[test]
    fn results_that_fit_travel_in_one_message() {
        let mut results = ItemResults::new();
        for v in 0..3u8 {
            results.push(Ok(&[v][..]));
        }
        let parts = result_parts(&ran_on(), 0, 9, 1, &results);
        let got = heads(&parts);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, Outcome::Items { first: 0, count: 3 });
        assert_eq!(got[0].1, results.entries(0..3));
    }

    #[test]
    fn results_are_cut_at_the_limit_and_one_too_large_item_fails_alone() {
        let max = HEADER_ROOM + HEAD_ROOM + 100;
        let mut results = ItemResults::new();
        results.push(Ok(&[1; 40][..]));
        results.push(Ok(&[2; 40][..]));
        results.push(Ok(&[3; 40][..]));
        results.push(Ok(&[4; 500][..]));
        results.push(Ok(&[5; 10][..]));
        let got = heads(&result_parts(&ran_on(), max, 9, 1, &results));
        let outcomes: Vec<_> = got.iter().map(|(o, _)| o.clone()).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Items { first: 0, count: 2 },
                Outcome::Items { first: 2, count: 1 },
                Outcome::Items { first: 3, count: 1 },
                Outcome::Items { first: 4, count: 1 },
            ]
        );
        let mut too_large = None;
        crate::envelope::for_each_entry(&got[2].1, 1, |_, r| too_large = Some(r.map(<[u8]>::to_vec)));
        match too_large {
            Some(Err(RemoteError::TooLarge { max: m, .. })) => assert_eq!(m, max as u64),
            other => panic!("{other:?}"),
        }
    }
}
