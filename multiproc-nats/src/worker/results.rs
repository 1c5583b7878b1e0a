//! A task's results on their way to its client: cut into messages the broker takes, and
//! stored in the pool's result stream, where the client takes them.
//!
//! A task's results go back in as many messages as the broker's size limit needs; an
//! item whose result alone is too large for a message goes into the pool's object store
//! (stored before the message naming it, which the client reads, then deletes).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::envelope::{HEADER_ROOM, ItemResults, Outcome, PROTOCOL, RanOn, RemoteError, ResultHead};
use crate::objects::{Objects, result_object};

/// Room for a result head (the worker's host name, at most a few hundred bytes).
const HEAD_ROOM: usize = 1024;

/// How storing a result for its client went.
pub(super) enum Delivery {
    Confirmed,
    Abandoned(String),
}

/// One result message, and the object to store before it (name and bytes) when the
/// outcome it announces is too large for a message.
#[derive(Debug)]
pub(super) struct Part {
    pub(super) message: Bytes,
    pub(super) object: Option<(String, Bytes)>,
}

/// Which task a result is for, and which run of it made it.
pub(super) struct ResultOf<'a> {
    pub(super) ran_on: &'a RanOn,
    pub(super) client: &'a str,
    pub(super) task_id: u64,
    pub(super) delivery: u64,
}

/// The result messages of the outcomes of items `first..first + results.len()` of a task
/// (`of`) under the broker's `max_payload` (0: no limit), in as many messages as the
/// limit needs. An item whose outcome alone is over the limit goes into an object of its
/// own, which its message names.
pub(super) fn result_parts(of: &ResultOf<'_>, max_payload: usize, first_item: u32, results: &ItemResults) -> Vec<Part> {
    let ResultOf { ran_on, client, task_id, delivery } = *of;
    let room = if max_payload == 0 { usize::MAX } else { max_payload.saturating_sub(HEADER_ROOM + HEAD_ROOM) };
    let message = |outcome: Outcome, entries: &[u8]| {
        let head = ResultHead { version: PROTOCOL, task_id, ran_on: ran_on.clone(), delivery, outcome };
        Bytes::from(head.encode(entries))
    };
    let mut parts = Vec::new();
    let mut first = 0;
    while first < results.len() {
        let (end, size) = fitting_run(results, first, room);
        let (at, count) = (first_item + first as u32, (end - first) as u32);
        if size > room {
            let object = result_object(client, task_id, delivery, at);
            let outcome = Outcome::InObject { first: at, count, object: object.clone() };
            let bytes = Bytes::copy_from_slice(results.entries(first..end));
            parts.push(Part { message: message(outcome, &[]), object: Some((object, bytes)) });
        } else {
            let outcome = Outcome::Items { first: at, count };
            parts.push(Part { message: message(outcome, results.entries(first..end)), object: None });
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
pub(super) fn refusal(ran_on: &RanOn, task_id: u64, delivery: u64, error: RemoteError) -> Vec<Part> {
    let head =
        ResultHead { version: PROTOCOL, task_id, ran_on: ran_on.clone(), delivery, outcome: Outcome::Failed(error) };
    vec![Part { message: Bytes::from(head.encode(&[])), object: None }]
}

/// Stores a task's result messages in the pool's result stream, on their client's
/// subject, where the client takes them (now, or when it is back from a disconnection),
/// each one's object first; retries while the broker does not confirm (it may be
/// restarting) for up to `patience`. An object whose message could not follow is deleted
/// (or, with the broker away, expires).
pub(super) async fn deliver(
    js: async_nats::jetstream::Context,
    objects: Objects,
    key: u64,
    subject: String,
    parts: Vec<Part>,
    patience: Duration,
) -> (u64, Delivery) {
    let deadline = Instant::now() + patience;
    for part in parts {
        if let Some((name, bytes)) = &part.object
            && let Err(e) = objects.put(name, bytes, deadline).await
        {
            return (key, Delivery::Abandoned(format!("storing a result: {e}")));
        }
        if let Err(e) = publish(&js, &subject, &part.message, deadline).await {
            if let Some((name, _)) = &part.object {
                objects.delete(name).await;
            }
            return (key, Delivery::Abandoned(format!("storing a result on {subject}: {e}")));
        }
    }
    (key, Delivery::Confirmed)
}

/// Publishes one result message, retrying until the broker confirms it or `deadline`.
async fn publish(
    js: &async_nats::jetstream::Context,
    subject: &str,
    message: &Bytes,
    deadline: Instant,
) -> Result<(), String> {
    let mut backoff = Duration::from_millis(20);
    loop {
        let stored = match js.publish(subject.to_string(), message.clone()).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran_on() -> RanOn {
        RanOn { host: "h".into(), worker_pid: 1, process_pid: Some(2) }
    }

    fn heads(parts: &[Part]) -> Vec<(Outcome, Vec<u8>)> {
        parts
            .iter()
            .map(|p| {
                let (head, rest) = ResultHead::decode(&p.message).unwrap();
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
        let ran_on = ran_on();
        let of = ResultOf { ran_on: &ran_on, client: "c", task_id: 9, delivery: 1 };
        let parts = result_parts(&of, 0, 0, &results);
        let got = heads(&parts);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, Outcome::Items { first: 0, count: 3 });
        assert_eq!(got[0].1, results.entries(0..3));
        // A later batch of the task's items says where it starts.
        let got = heads(&result_parts(&of, 0, 5, &results));
        assert_eq!(got[0].0, Outcome::Items { first: 5, count: 3 });
    }

    #[test]
    fn results_are_cut_at_the_limit_and_one_too_large_item_goes_into_an_object() {
        let max = HEADER_ROOM + HEAD_ROOM + 100;
        let mut results = ItemResults::new();
        results.push(Ok(&[1; 40][..]));
        results.push(Ok(&[2; 40][..]));
        results.push(Ok(&[3; 40][..]));
        results.push(Ok(&[4; 500][..]));
        results.push(Ok(&[5; 10][..]));
        let ran_on = ran_on();
        let of = ResultOf { ran_on: &ran_on, client: "c", task_id: 9, delivery: 2 };
        let parts = result_parts(&of, max, 0, &results);
        let got = heads(&parts);
        let outcomes: Vec<_> = got.iter().map(|(o, _)| o.clone()).collect();
        let object = result_object("c", 9, 2, 3);
        assert_eq!(
            outcomes,
            [
                Outcome::Items { first: 0, count: 2 },
                Outcome::Items { first: 2, count: 1 },
                Outcome::InObject { first: 3, count: 1, object: object.clone() },
                Outcome::Items { first: 4, count: 1 },
            ]
        );
        assert!(parts.iter().all(|p| p.message.len() <= max), "every message within the limit");
        // The object holds the entry exactly as a message would have carried it.
        let (name, bytes) = parts[2].object.as_ref().expect("the large result travels as an object");
        assert_eq!((name, &bytes[..]), (&object, results.entries(3..4)));
        assert!(got[2].1.is_empty());
        let mut read = None;
        crate::envelope::for_each_entry(bytes, 1, |_, r| read = Some(r.map(<[u8]>::to_vec)));
        assert_eq!(read, Some(Ok(vec![4; 500])));
    }
}
