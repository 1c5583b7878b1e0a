//! Process-shared futexes: sleep until a 32-bit word in shared memory changes.
//!
//! The futexes here are *shared* (no `FUTEX_PRIVATE_FLAG`): the kernel keys them by the
//! underlying memory, so waiters and wakers in different processes meet.

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::io::Errno;
use rustix::thread::futex;

/// Sleeps while `*word == expected`, at most `timeout` (`None`: until woken).
///
/// Returns on a wake-up, a change of the word, a signal, or the timeout — callers
/// re-check their condition and deadline, as with any futex.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(|d| rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Ok(()) | Err(Errno::AGAIN) | Err(Errno::INTR) | Err(Errno::TIMEDOUT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Wakes up to `n` sleepers on `word`; returns how many woke.
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    futex::wake(word, futex::Flags::empty(), n).unwrap_or(0)
}

/// Wakes every sleeper on `word`.
pub(crate) fn wake_all(word: &AtomicU32) -> usize {
    wake(word, i32::MAX as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_changed_word_returns_at_once_and_a_timeout_returns() {
        let w = AtomicU32::new(1);
        wait(&w, 0, None).unwrap();
        wait(&w, 1, Some(Duration::from_millis(1))).unwrap();
        w.store(2, Ordering::SeqCst);
        assert_eq!(wake(&w, 1), 0);
    }
}
