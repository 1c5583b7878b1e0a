//! The test watchdog: a test binary that is still running long after any test should
//! have ended is stopped with a message, instead of holding its caller (a CI run, a
//! developer's terminal) for ever.
//!
//! A hang is the one failure a test harness cannot report: `cargo test` waits for the
//! test. [`test_init!`](crate::test_init) starts this watchdog in the test binary's
//! own process (never in the children it starts): after `MULTIPROC_TEST_WATCHDOG`
//! seconds (600 unless set; `0` turns it off, as a long soak does) it names the binary,
//! kills every process below it (pool workers, a test's broker, what those started: an
//! abort runs no destructor that would) and aborts it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The variable that sets the watchdog's patience, in whole seconds (`0`: no watchdog).
pub const WATCHDOG_VAR: &str = "MULTIPROC_TEST_WATCHDOG";

/// The patience when the variable is unset: far longer than any one test binary runs.
const DEFAULT_PATIENCE: Duration = Duration::from_secs(600);

/// Set when the watchdog fires: from then on the binary may only end by its abort.
static FIRED: AtomicBool = AtomicBool::new(false);

/// At exit: a binary whose watchdog fired aborts rather than exit. Killing the hung
/// test's children may end the hang (a test waiting for one of them), and the harness
/// could then exit with success before the watchdog's own abort.
extern "C" fn abort_if_fired() {
    if FIRED.load(Ordering::SeqCst) {
        std::process::abort();
    }
}

/// The watchdog's patience from the variable's value: `None` means no watchdog.
fn patience(value: Option<&str>) -> Result<Option<Duration>, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(Some(DEFAULT_PATIENCE)),
        Some(v) => match v.parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(s) => Ok(Some(Duration::from_secs(s))),
            Err(_) => Err(format!("{WATCHDOG_VAR}={v:?}: expected whole seconds (0 turns the watchdog off)")),
        },
    }
}

/// Starts the watchdog thread (test binaries only; see the module's header).
#[doc(hidden)]
pub fn start_test_watchdog() {
    let value = std::env::var(WATCHDOG_VAR).ok();
    let limit = match patience(value.as_deref()) {
        Ok(Some(limit)) => limit,
        Ok(None) => return,
        Err(message) => {
            eprintln!("multiproc test watchdog: {message}");
            std::process::exit(2);
        }
    };
    crate::sys::proc::at_exit(abort_if_fired);
    let spawned = std::thread::Builder::new().name("multiproc-test-watchdog".into()).spawn(move || {
        // Parked, not polling: the thread wakes once, when the patience is spent.
        std::thread::sleep(limit);
        let exe = std::env::args().next().unwrap_or_default();
        eprintln!(
            "multiproc test watchdog: {exe} is still running after {} s: a test hangs. \
             Aborting; set {WATCHDOG_VAR}=0 to turn this off, or more seconds for a long run.",
            limit.as_secs()
        );
        FIRED.store(true, Ordering::SeqCst);
        crate::sys::contain::kill_descendants(std::process::id());
        std::process::abort();
    });
    if let Err(e) = spawned {
        eprintln!("multiproc test watchdog: could not start its thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patience_is_whole_seconds_zero_is_off_and_garbage_is_named() {
        assert_eq!(patience(None), Ok(Some(DEFAULT_PATIENCE)));
        assert_eq!(patience(Some(" 30 ")), Ok(Some(Duration::from_secs(30))));
        assert_eq!(patience(Some("0")), Ok(None));
        let e = patience(Some("ten")).unwrap_err();
        assert!(e.contains(WATCHDOG_VAR) && e.contains("\"ten\""), "{e}");
    }
}
