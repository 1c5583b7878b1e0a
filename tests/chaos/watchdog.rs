//! A thread that ends the whole test, loudly, when a run takes far longer than it should:
//! a hang cannot be unwound, so it prints the seed and the schedule and aborts.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Armed {
    /// The deadline of the run in progress and what to print if it passes.
    run: Option<(Instant, String)>,
}

pub struct Watchdog {
    state: Arc<(Mutex<Armed>, Condvar)>,
}

impl Watchdog {
    pub fn start() -> Watchdog {
        let state: Arc<(Mutex<Armed>, Condvar)> = Arc::default();
        let watched = state.clone();
        std::thread::Builder::new().name("chaos-watchdog".into()).spawn(move || watch(&watched)).unwrap();
        Watchdog { state }
    }

    /// Starts watching a run: past `limit`, `describe` is printed and the process aborts.
    pub fn arm(&self, limit: Duration, describe: String) {
        let (lock, cond) = &*self.state;
        lock.lock().unwrap().run = Some((Instant::now() + limit, describe));
        cond.notify_all();
    }

    pub fn disarm(&self) {
        let (lock, cond) = &*self.state;
        lock.lock().unwrap().run = None;
        cond.notify_all();
    }
}

fn watch(state: &(Mutex<Armed>, Condvar)) {
    let (lock, cond) = state;
    let mut armed = lock.lock().unwrap();
    loop {
        match &armed.run {
            None => armed = cond.wait(armed).unwrap(),
            Some((deadline, describe)) => {
                let now = Instant::now();
                if now >= *deadline {
                    // Straight to the descriptor: the harness's capture dies with the process.
                    let mut err = std::io::stderr();
                    let _ = writeln!(err, "\nCHAOS HANG: a run passed its time limit; the test aborts.\n{describe}\n");
                    std::process::abort();
                }
                let wait = *deadline - now;
                armed = cond.wait_timeout(armed, wait).unwrap().0;
            }
        }
    }
}
