//! On a cluster pool, a task's failures mean what they mean on one machine, because the
//! worker runs its tasks on a local pool: a task that segfaults gives `WorkerDied` naming
//! SIGSEGV (and the worker's pool goes on), one past its timeout gives `Timeout`, a panic
//! gives `Panicked`, `retries` run it again, and the worker pool's initializer has run in
//! the process that runs the task.

use std::sync::OnceLock;
use std::time::Duration;

use multiproc::{Pool, TaskError, TaskOptions};
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{BrokerConfig, PoolRunner, WorkerConfig};

mod common;

multiproc_nats::test_init!();

static GREETING: OnceLock<String> = OnceLock::new();

fn greet(text: String) {
    let _ = GREETING.set(text);
}

/// What the task's process was set up with, and which worker runs it.
fn greeting(_: ()) -> (Option<String>, u32) {
    (GREETING.get().cloned(), common::worker_of_this_task())
}

// A real SIGSEGV (not a signal sent) needs an invalid write: the one `unsafe` of this file.
#[allow(unsafe_code)]
fn misbehave(how: String) -> u32 {
    match how.as_str() {
        "segfault" => {
            // SAFETY: deliberately invalid (a dangling pointer: address 8, never mapped):
            // the test needs a real SIGSEGV, and the process dies before anything else runs.
            unsafe { std::ptr::write_volatile(std::ptr::dangling_mut::<u64>(), 1) };
            0
        }
        "panic" => panic!("asked to panic"),
        "hang" => {
            std::thread::sleep(Duration::from_secs(3600));
            0
        }
        _ => common::worker_of_this_task(),
    }
}

/// A worker whose local pool has an initializer, as a user would set one up.
fn worker_with_initializer((url, pool, ack_wait_ms): (String, String, u64)) {
    let local = Pool::builder().processes(2).initializer(greet, "hello from the initializer".to_string()).build();
    let runner = PoolRunner::new(local.expect("the worker's pool starts"));
    let config = WorkerConfig::new(BrokerConfig::parse(&url).unwrap())
        .queue(common::queue(&pool, Duration::from_millis(ack_wait_ms)));
    let worker = multiproc_nats::start_worker(config, std::sync::Arc::new(runner)).expect("the worker starts");
    let _ = worker.join();
}

const ACK_WAIT: Duration = Duration::from_secs(30);

/// A worker process whose local pool has an initializer.
fn start_worker_with_initializer(server: &NatsServer) -> common::Worker {
    let args = (server.url(), "faults".to_string(), ACK_WAIT.as_millis() as u64);
    let mut p = multiproc::Process::new(worker_with_initializer, args).daemon(true);
    p.start().unwrap();
    common::Worker(p)
}

#[test]
fn failures_on_a_worker_mean_what_they_mean_locally() {
    let Some(server) = NatsServer::start("pool-faults") else { return };
    let worker = start_worker_with_initializer(&server);
    let pool = common::cluster_pool(&server, "faults", ACK_WAIT, 2);

    let (greeting_seen, ran_on) = pool.apply(greeting, ()).unwrap();
    assert_eq!(greeting_seen.as_deref(), Some("hello from the initializer"));
    assert_eq!(ran_on, worker.pid());

    let e = pool.apply(misbehave, "segfault".to_string()).unwrap_err();
    match &e {
        TaskError::WorkerDied { task, signal, exit_code, attempts, .. } => {
            assert!(task.contains("misbehave"), "{e}");
            assert_eq!((*signal, *exit_code, attempts.len()), (Some(11), None, 1));
        }
        other => panic!("unexpected: {other:?}"),
    }
    assert!(e.to_string().contains("SIGSEGV") && e.to_string().contains("misbehave"), "{e}");
    // The worker's pool replaced the process and goes on; so does the worker.
    assert_eq!(pool.apply(misbehave, "alive?".to_string()).unwrap(), worker.pid());

    let e = pool.apply(misbehave, "panic".to_string()).unwrap_err();
    match &e {
        TaskError::Panicked { message, location, .. } => {
            assert_eq!(message, "asked to panic");
            assert!(location.contains("cluster_pool_faults.rs"), "{e}");
        }
        other => panic!("unexpected: {other:?}"),
    }

    let r =
        pool.apply_async_with(misbehave, "hang".to_string(), TaskOptions::new().timeout(Duration::from_millis(300)));
    match r.get() {
        Err(TaskError::Timeout { task, timeout, .. }) => {
            assert!(task.contains("misbehave"));
            assert_eq!(timeout, Duration::from_millis(300));
        }
        other => panic!("unexpected: {other:?}"),
    }

    // Retries: a task whose process dies every time is run 1 + 2 times, then reported
    // with every attempt.
    let r = pool.apply_async_with(misbehave, "segfault".to_string(), TaskOptions::new().retries(2));
    match r.get() {
        Err(TaskError::WorkerDied { attempts, .. }) => {
            assert_eq!(attempts.len(), 3);
            assert!(attempts.iter().all(|a| a.signal == Some(11)));
        }
        other => panic!("unexpected: {other:?}"),
    }
    // In a map, the crash costs its item only.
    let all = pool.map_results(misbehave, ["a".to_string(), "segfault".to_string(), "b".to_string()]);
    assert_eq!(all[0], Ok(worker.pid()));
    assert!(matches!(&all[1], Err(TaskError::WorkerDied { signal: Some(11), .. })), "{:?}", all[1]);
    assert_eq!(all[2], Ok(worker.pid()));

    let stats = pool.stats();
    assert_eq!((stats.tasks_worker_died, stats.tasks_timed_out, stats.tasks_panicked), (3, 1, 1), "{stats:?}");
    assert_eq!((stats.tasks_retried, stats.died_by_signal.get(&11)), (2, Some(&5)), "{stats:?}");
}
