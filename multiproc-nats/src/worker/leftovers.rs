//! Acked tasks a restarted broker brought back.
//!
//! JetStream removes a task from the work-queue stream when a worker acks it, and keeps
//! its consumer's ack floor (every task at or below it is acked) apart from the stream's
//! messages. A broker killed after it recorded an ack but before its store recorded the
//! removal comes back with the task in the stream *behind* the ack floor: the consumer
//! never delivers it again, and it would count in the queue's depth (`status().tasks`)
//! for ever.
//!
//! Invariant: a task of this build still in the stream at or below its consumer's ack
//! floor was acked, so purging this build's subject below `floor + 1` removes only such
//! leftovers, never a task that waits. An idle worker sweeps them on its heartbeat.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::stream::Stream;

/// How long a sweep's requests may take before the heartbeat goes on without it.
const SWEEP_PATIENCE: Duration = Duration::from_secs(2);

/// Where to purge this build's subject up to (exclusive), given the sequence of its
/// first task in the stream (`None`: it has none) and its consumer's ack floor (a stream
/// sequence; 0 before any ack): `Some` only when a task sits at or below the floor.
fn purge_before(first_task: Option<u64>, ack_floor: u64) -> Option<u64> {
    first_task.filter(|&first| first <= ack_floor).map(|_| ack_floor + 1)
}

/// Purges this build's acked tasks that are still in the stream (see the invariant);
/// returns how many went. Best effort: a request that fails or takes too long leaves
/// them for the next idle heartbeat.
pub(super) async fn sweep(stream: &Stream, consumer: &PullConsumer, subject: &str) -> u64 {
    let swept = tokio::time::timeout(SWEEP_PATIENCE, async {
        let floor = consumer.get_info().await.ok()?.ack_floor.stream_sequence;
        let first = match stream.get_first_raw_message_by_subject(subject, 1).await {
            Ok(m) => Some(m.sequence),
            // No task of this build in the stream: nothing to sweep.
            Err(_) => None,
        };
        let before = purge_before(first, floor)?;
        stream.purge().filter(subject).sequence(before).await.ok().map(|p| p.purged)
    });
    swept.await.ok().flatten().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::purge_before;

    #[test]
    fn only_a_task_at_or_below_the_ack_floor_is_a_leftover() {
        assert_eq!(purge_before(None, 40), None, "no task of this build in the stream");
        assert_eq!(purge_before(Some(41), 40), None, "the first task waits: above the floor");
        assert_eq!(purge_before(Some(40), 40), Some(41));
        assert_eq!(purge_before(Some(3), 45), Some(46), "everything up to the floor is acked");
        assert_eq!(purge_before(Some(1), 0), None, "nothing acked yet");
    }
}
