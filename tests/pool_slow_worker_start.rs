//! `Pool::build` returns once one worker is up; a worker still starting joins later, and
//! a pool that closes or terminates before it is up kills it instead of waiting.
//!
//! The workers run through a launcher script: the first starts the program at once,
//! every later one hands the test its pid through a FIFO, then blocks opening a FIFO
//! that nobody ever writes to (in the shell itself, so killing the shell leaves nothing
//! behind).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use multiproc::{Pool, TaskError};

mod common;
use common::assert_gone;

multiproc::test_init!();

fn double(x: u64) -> u64 {
    x * 2
}

/// A folder with the launcher script, removed at drop.
struct Launcher {
    dir: PathBuf,
}

impl Launcher {
    fn new(tag: &str) -> Launcher {
        let dir = std::env::temp_dir().join(format!("multiproc-slow-start-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let real = std::env::current_exe().unwrap();
        for fifo in ["pid", "never"] {
            let made = std::process::Command::new("mkfifo").arg(dir.join(fifo)).status().unwrap();
            assert!(made.success(), "mkfifo");
        }
        let script = format!(
            "#!/bin/sh\n\
             if mkdir '{d}/first' 2>/dev/null; then exec '{real}' \"$@\"; fi\n\
             echo $$ > '{d}/pid'\n\
             read line < '{d}/never'\n\
             exec '{real}' \"$@\"\n",
            d = dir.display(),
            real = real.display()
        );
        let path = dir.join("launch");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Launcher { dir }
    }

    fn script(&self) -> PathBuf {
        self.dir.join("launch")
    }

    /// The slow worker's pid: blocks until its launcher writes it.
    fn slow_pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("pid")).unwrap().trim().parse().unwrap()
    }

    fn pool(&self) -> Pool {
        Pool::builder()
            .processes(2)
            .executable(self.script())
            // Every worker is exec'd through the launcher (a fork server would exec it once).
            .start_method(multiproc::StartMethod::Exec)
            // Without the kill at close, join would wait this long for the slow worker.
            .start_timeout(Duration::from_secs(3600))
            .build()
            .unwrap()
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn close_and_join_kill_a_worker_that_is_still_starting() {
    let l = Launcher::new("close");
    let pool = l.pool();
    // One worker is up and runs tasks while the other is still starting.
    assert_eq!(pool.apply(double, 21).unwrap(), 42);
    assert_eq!(pool.map(double, 0..10).unwrap(), (0..10).map(|x| x * 2).collect::<Vec<_>>());
    let s = pool.stats();
    assert_eq!((s.workers_started, s.worker_pids.len()), (1, 1), "{s:?}");
    let slow = l.slow_pid();
    pool.close();
    pool.join().unwrap();
    let s = pool.stats();
    assert_eq!((s.workers_died, s.workers_alive), (0, 0), "{s:?}");
    assert_gone(&[slow]);
    assert_gone(&s.worker_pids);
}

#[test]
fn terminate_kills_a_worker_that_is_still_starting() {
    let l = Launcher::new("terminate");
    let pool = l.pool();
    let first = pool.stats().worker_pids;
    let slow = l.slow_pid();
    pool.terminate();
    assert!(matches!(pool.apply(double, 1), Err(TaskError::Terminated { .. } | TaskError::Closed { .. })));
    assert_gone(&[slow]);
    assert_gone(&first);
}

#[test]
fn a_pool_dropped_while_a_worker_starts_leaves_nothing() {
    let l = Launcher::new("drop");
    let pool = l.pool();
    let first = pool.stats().worker_pids;
    let slow = l.slow_pid();
    drop(pool);
    assert_gone(&[slow]);
    assert_gone(&first);
}
