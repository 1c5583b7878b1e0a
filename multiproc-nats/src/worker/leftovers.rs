//! Acked tasks a restarted broker brought back.
//!
//! JetStream removes a task from the work-queue stream when a worker acks it, and keeps
//! its consumer's ack floor (every task at or below it is acked) apart from the stream's
//! messages. A broker killed after it recorded an ack but before its store recorded the
//! removal comes back with the task in the stream *behind* the ack floor: the consumer
//! never delivers it again, and it would count in the queue's depth (`status().tasks`)
//! for ever.
//!
//! The ack floor alone does not find them all: after such a restart the broker (seen
//! with nats-server 2.9) can report an ack floor whose stream sequence stays at 1 while
//! its consumer sequence and the delivered sequences reach the end, everything acked,
//! nothing in flight. So the sweep also reads what the consumer delivered.
//!
//! Invariant: a task of this build still in the stream at or below [`acked_through`]
//! was acked (or given up after its last delivery; it will never be delivered again
//! either), so purging this build's subject below that sequence + 1 removes only such
//! leftovers, never a task that waits. An idle worker sweeps them on its heartbeat.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::stream::Stream;

/// How long a sweep's requests may take before the heartbeat goes on without it.
const SWEEP_PATIENCE: Duration = Duration::from_secs(2);

/// What a build's consumer says of the tasks it handed out, as stream sequences.
#[derive(Debug, Clone, Copy)]
struct Handed {
    /// Every task at or below it was acked (0 before any ack).
    ack_floor: u64,
    /// The last task delivered (0 before any).
    delivered: u64,
    /// Tasks delivered and not yet acked.
    in_flight: u64,
}

/// The stream sequence at or below which every task of this build is done with: with
/// nothing in flight, everything delivered (a consumer hands its subject's tasks out in
/// stream order, so every task up to the last delivered was delivered, and none waits
/// for an ack); otherwise only what the ack floor covers.
fn acked_through(h: Handed) -> u64 {
    if h.in_flight == 0 { h.delivered.max(h.ack_floor) } else { h.ack_floor }
}

/// Where to purge this build's subject up to (exclusive), given the sequence of its
/// first task in the stream (`None`: it has none) and what its consumer handed out:
/// `Some` only when a task sits at or below [`acked_through`].
fn purge_before(first_task: Option<u64>, handed: Handed) -> Option<u64> {
    let done = acked_through(handed);
    first_task.filter(|&first| first <= done).map(|_| done + 1)
}

/// Purges this build's acked tasks that are still in the stream (see the invariant);
/// returns how many went. Best effort: a request that fails or takes too long leaves
/// them for the next idle heartbeat.
pub(super) async fn sweep(stream: &Stream, consumer: &PullConsumer, subject: &str) -> u64 {
    let swept = tokio::time::timeout(SWEEP_PATIENCE, async {
        let info = consumer.get_info().await.ok()?;
        let handed = Handed {
            ack_floor: info.ack_floor.stream_sequence,
            delivered: info.delivered.stream_sequence,
            in_flight: info.num_ack_pending as u64,
        };
        let first = match stream.get_first_raw_message_by_subject(subject, 1).await {
            Ok(m) => Some(m.sequence),
            // No task of this build in the stream: nothing to sweep.
            Err(_) => None,
        };
        let before = purge_before(first, handed)?;
        stream.purge().filter(subject).sequence(before).await.ok().map(|p| p.purged)
    });
    swept.await.ok().flatten().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{Handed, purge_before};

    fn busy(ack_floor: u64, delivered: u64) -> Handed {
        Handed { ack_floor, delivered, in_flight: 1 }
    }

    #[test]
    fn with_tasks_in_flight_only_a_task_at_or_below_the_ack_floor_is_a_leftover() {
        assert_eq!(purge_before(None, busy(40, 50)), None, "no task of this build in the stream");
        assert_eq!(purge_before(Some(41), busy(40, 50)), None, "the first task waits: above the floor");
        assert_eq!(purge_before(Some(40), busy(40, 50)), Some(41));
        assert_eq!(purge_before(Some(3), busy(45, 50)), Some(46), "everything up to the floor is acked");
        assert_eq!(purge_before(Some(1), busy(0, 1)), None, "nothing acked yet");
    }

    #[test]
    fn with_nothing_in_flight_everything_delivered_is_a_leftover() {
        // Seen after a broker restart: the floor's stream sequence stuck at 1, every one
        // of 800 tasks delivered and acked, 71 of them back in the stream.
        let after_restart = Handed { ack_floor: 1, delivered: 800, in_flight: 0 };
        assert_eq!(purge_before(Some(2), after_restart), Some(801));
        let idle = Handed { ack_floor: 30, delivered: 30, in_flight: 0 };
        assert_eq!(purge_before(Some(31), idle), None, "a task not yet delivered waits");
        assert_eq!(purge_before(Some(1), Handed { ack_floor: 0, delivered: 0, in_flight: 0 }), None);
    }
}
