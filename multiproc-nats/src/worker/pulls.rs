//! The worker's open pull requests, and how many more tasks to ask for: pure
//! bookkeeping, apart from the broker.
//!
//! The worker asks the broker for exactly as many tasks as it has free slots, so a busy
//! worker holds little that an idle one could run. Each request gets its own reply
//! subject (`<inbox>.<n>`), on which the server ends it with a status (408 expired, 409
//! ended); tasks themselves keep their own subject, so which request a task fills is not
//! on it: the server fills a consumer's requests in the order they came.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long past its expiry a request whose end never came (its connection broke) is
/// still counted.
const END_GRACE: Duration = Duration::from_secs(2);

/// How many tasks to ask for now: what the runner wants in hand (at least one, at most
/// its slots), less what runs and what open requests may still bring.
pub(super) fn free_slots(wanted: usize, slots: usize, running: usize, awaiting: usize) -> usize {
    wanted.clamp(1, slots).saturating_sub(running + awaiting)
}

/// How often running tasks get an in-progress ack: three times per `ack_wait`, so one
/// lost ack does not cost a task.
pub(super) fn progress_period(ack_wait: Duration) -> Duration {
    (ack_wait / 3).max(Duration::from_millis(20))
}

/// What a message on the pull inbox is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Arrival {
    /// A task.
    Task,
    /// The end of request `n` (or of a request whose number is unreadable).
    RequestEnded(Option<u64>),
    /// An idle heartbeat: nothing.
    Heartbeat,
}

/// Classifies a message by its status and its subject.
pub(super) fn arrival(status: Option<async_nats::StatusCode>, subject: &str) -> Arrival {
    match status {
        Some(status) if status == async_nats::StatusCode::IDLE_HEARTBEAT => Arrival::Heartbeat,
        Some(status) if status != async_nats::StatusCode::OK => {
            Arrival::RequestEnded(subject.rsplit('.').next().and_then(|n| n.parse().ok()))
        }
        _ => Arrival::Task,
    }
}

/// A pull request this worker has open: how many tasks it may still bring.
#[derive(Debug)]
struct Request {
    left: usize,
    expires_at: Instant,
}

/// The open pull requests, oldest first.
#[derive(Debug, Default)]
pub(super) struct PullBook {
    requests: BTreeMap<u64, Request>,
    next: u64,
}

impl PullBook {
    /// How many tasks the open requests may still bring.
    pub(super) fn awaiting(&self) -> usize {
        self.requests.values().map(|r| r.left).sum()
    }

    /// The number of the next request (its reply subject's last token).
    pub(super) fn next_number(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Request `n` for `batch` tasks was sent at `now`; it expires after `expiry`.
    pub(super) fn opened(&mut self, n: u64, batch: usize, now: Instant, expiry: Duration) {
        self.requests.insert(n, Request { left: batch, expires_at: now + expiry + END_GRACE });
    }

    /// The server ended request `n`.
    pub(super) fn ended(&mut self, n: u64) {
        self.requests.remove(&n);
    }

    /// A task came: it fills the oldest request.
    pub(super) fn filled_one(&mut self) {
        if let Some(mut oldest) = self.requests.first_entry() {
            oldest.get_mut().left -= 1;
            if oldest.get().left == 0 {
                oldest.remove();
            }
        }
    }

    /// Forgets requests whose end never came by `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        self.requests.retain(|_, r| r.expires_at > now);
    }

    /// Forgets every request (those of a connection that is gone).
    pub(super) fn clear(&mut self) {
        self.requests.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_only_for_free_slots_and_at_least_one_when_the_runner_wants_none() {
        assert_eq!(free_slots(4, 4, 0, 0), 4);
        assert_eq!(free_slots(4, 4, 3, 0), 1);
        assert_eq!(free_slots(4, 4, 2, 2), 0);
        assert_eq!(free_slots(9, 4, 1, 0), 3, "never more than the slots");
        assert_eq!(free_slots(0, 4, 0, 0), 1, "always at least one");
        assert_eq!(free_slots(4, 4, 5, 1), 0, "more in hand than slots is no debt");
    }

    #[test]
    fn progress_comes_three_times_per_ack_wait() {
        assert_eq!(progress_period(Duration::from_secs(30)), Duration::from_secs(10));
        assert_eq!(progress_period(Duration::from_millis(30)), Duration::from_millis(20));
    }

    #[test]
    fn statuses_end_requests_by_the_number_in_their_subject() {
        use async_nats::StatusCode;
        assert_eq!(arrival(None, "mproc.p.tasks"), Arrival::Task);
        assert_eq!(arrival(Some(StatusCode::OK), "x"), Arrival::Task);
        assert_eq!(arrival(Some(StatusCode::IDLE_HEARTBEAT), "_INBOX.a.3"), Arrival::Heartbeat);
        assert_eq!(arrival(Some(StatusCode::TIMEOUT), "_INBOX.a.3"), Arrival::RequestEnded(Some(3)));
        assert_eq!(arrival(Some(StatusCode::REQUEST_TERMINATED), "_INBOX.a.b"), Arrival::RequestEnded(None));
    }

    #[test]
    fn tasks_fill_the_oldest_request_first() {
        let mut book = PullBook::default();
        let now = Instant::now();
        let (a, b) = (book.next_number(), book.next_number());
        book.opened(a, 2, now, Duration::from_secs(5));
        book.opened(b, 3, now, Duration::from_secs(5));
        assert_eq!(book.awaiting(), 5);
        book.filled_one();
        book.filled_one();
        assert_eq!(book.awaiting(), 3);
        book.ended(a); // already full: nothing changes
        assert_eq!(book.awaiting(), 3);
        book.ended(b);
        assert_eq!(book.awaiting(), 0);
        book.filled_one(); // more than asked for: no request to fill
        assert_eq!(book.awaiting(), 0);
    }

    #[test]
    fn a_request_whose_end_never_came_expires_after_a_grace() {
        let mut book = PullBook::default();
        let now = Instant::now();
        let n = book.next_number();
        book.opened(n, 1, now, Duration::from_secs(5));
        book.expire(now + Duration::from_secs(6));
        assert_eq!(book.awaiting(), 1);
        book.expire(now + Duration::from_secs(8));
        assert_eq!(book.awaiting(), 0);
        book.opened(book.next, 4, now, Duration::from_secs(5));
        book.clear();
        assert_eq!(book.awaiting(), 0);
    }
}
