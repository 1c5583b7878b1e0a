//! The claim word: how the driver takes back tasks a worker holds and has not started,
//! with none of them ever run twice.
//!
//! A worker runs its tasks in order, and holds up to a window of them; a long task
//! holds every task queued behind it hostage while other workers idle. The driver takes
//! those back, and must know for sure that the worker will never run them.
//!
//! Each task the driver sends a worker gets the next *position* (0, 1, 2, … counted
//! apart for each worker; express tasks have none). One word in the counter page the two
//! share packs two positions, each modulo 2³²:
//!
//! - `claimed` (low half): how many positions the worker has decided. Only the worker
//!   moves it, by one, before each task it reads: the task at position `claimed` is the
//!   next one, so the worker needs no position of its own.
//! - `skip_until` (high half): positions below it that are not yet decided are skipped.
//!   Only the driver raises it past `claimed`.
//!
//! Invariant: `claimed ≤ skip_until ≤ sent` (sent: positions the driver has sent), and
//! `skip_until - claimed` is the number of revoked tasks the worker has yet to read past.
//!
//! - The worker, before the task at position `c`, swaps `(c, k)` for `(c + 1, k)` if
//!   `k > c` (revoked: it skips the task, reading its frame and dropping what came with
//!   it), else for `(c + 1, c + 1)` (claimed: it runs the task).
//! - The driver revokes by swapping `(c, k)` for `(c, sent)`. Once that compare-and-swap
//!   succeeds, every position from `k` to `sent` is one the worker had not decided (all
//!   positions `≥ k ≥ c`), and it will skip each: those `sent - k` tasks, the last ones it
//!   holds, go back to the driver's queue. Positions `c..k` were revoked before.
//!
//! Both sides decide with one compare-and-swap on the same word, so a task is either
//! claimed (and stays the worker's: its result, or its death's blame) or revoked (and
//! runs elsewhere), never both, whoever is first. A skipped task starts no item, so the
//! item counters that name a dead worker's culprit are unchanged.
//!
//! Positions wrap: differences are taken modulo 2³², and stay far below 2³¹ (a worker
//! holds at most a window of tasks).

use std::sync::atomic::{AtomicU64, Ordering};

/// `claimed` and `skip_until` of a packed word.
fn unpack(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

fn pack(claimed: u32, skip_until: u32) -> u64 {
    (skip_until as u64) << 32 | claimed as u64
}

/// What the worker does with the next task it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Run,
    Skip,
}

/// The worker's side, before the next task it reads (a task the driver sent, not an
/// express one): decides it, and says whether to run it.
pub(crate) fn claim_next(word: &AtomicU64) -> Decision {
    let mut cur = word.load(Ordering::Acquire);
    loop {
        let (claimed, skip_until) = unpack(cur);
        let next = claimed.wrapping_add(1);
        let (new, decision) = if skip_until != claimed {
            (pack(next, skip_until), Decision::Skip)
        } else {
            (pack(next, next), Decision::Run)
        };
        match word.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return decision,
            Err(now) => cur = now,
        }
    }
}

/// The driver's side: revokes every task at positions below `sent` the worker has not
/// decided; returns how many it revoked now (the last ones sent; those revoked before
/// are not counted again).
pub(crate) fn revoke(word: &AtomicU64, sent: u32) -> u32 {
    let mut cur = word.load(Ordering::Acquire);
    loop {
        let (claimed, skip_until) = unpack(cur);
        match word.compare_exchange_weak(cur, pack(claimed, sent), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return sent.wrapping_sub(skip_until),
            Err(now) => cur = now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn tasks_run_in_order_until_revoked_then_the_revoked_ones_are_skipped() {
        let word = AtomicU64::new(0);
        assert_eq!(claim_next(&word), Decision::Run);
        assert_eq!(claim_next(&word), Decision::Run);
        // Five sent, two claimed: the three behind are revoked, then skipped, once.
        assert_eq!(revoke(&word, 5), 3);
        assert_eq!(revoke(&word, 5), 0, "nothing is revoked twice");
        assert_eq!([(); 3].map(|_| claim_next(&word)), [Decision::Skip; 3]);
        // Two more sent after the revocation run, unless revoked in turn.
        assert_eq!(claim_next(&word), Decision::Run);
        assert_eq!(revoke(&word, 7), 1);
        assert_eq!(claim_next(&word), Decision::Skip);
        assert_eq!(unpack(word.load(Ordering::Relaxed)), (7, 7));
    }

    #[test]
    fn a_revocation_while_revoked_tasks_are_still_unread_counts_only_the_new_ones() {
        let word = AtomicU64::new(0);
        assert_eq!(claim_next(&word), Decision::Run);
        assert_eq!(revoke(&word, 4), 3);
        assert_eq!(revoke(&word, 6), 2);
        assert_eq!([(); 5].map(|_| claim_next(&word)), [Decision::Skip; 5]);
        assert_eq!(claim_next(&word), Decision::Run);
    }

    #[test]
    fn positions_wrap() {
        let word = AtomicU64::new(pack(u32::MAX - 1, u32::MAX - 1));
        assert_eq!(claim_next(&word), Decision::Run);
        assert_eq!(revoke(&word, 2), 3, "positions MAX, 0 and 1");
        assert_eq!([(); 3].map(|_| claim_next(&word)), [Decision::Skip; 3]);
        assert_eq!(claim_next(&word), Decision::Run);
    }

    /// A worker thread decides tasks as they are sent, while the driver's thread sends
    /// more and revokes now and then: every position is either run or revoked, never
    /// both, never neither.
    #[test]
    fn racing_sides_settle_every_position_exactly_once() {
        use std::sync::atomic::AtomicU32;
        const SENT: u32 = 200_000;
        let word = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU32::new(0));
        let worker = {
            let (word, sent) = (word.clone(), sent.clone());
            std::thread::spawn(move || {
                (0..SENT)
                    .map(|p| {
                        // A worker reads only tasks that were sent.
                        while sent.load(Ordering::Acquire) <= p {
                            std::hint::spin_loop();
                        }
                        claim_next(&word) == Decision::Run
                    })
                    .collect::<Vec<_>>()
            })
        };
        let mut revoked = vec![false; SENT as usize];
        let mut step = 0;
        while sent.load(Ordering::Relaxed) < SENT {
            let now = (sent.load(Ordering::Relaxed) + 7).min(SENT);
            sent.store(now, Ordering::Release);
            step += 1;
            if step % 3 != 0 {
                continue;
            }
            let n = revoke(&word, now);
            for p in now - n..now {
                assert!(!revoked[p as usize], "position {p} revoked twice");
                revoked[p as usize] = true;
            }
        }
        let ran = worker.join().unwrap();
        for p in 0..SENT as usize {
            assert!(ran[p] != revoked[p], "position {p}: ran {}, revoked {}", ran[p], revoked[p]);
        }
    }
}
