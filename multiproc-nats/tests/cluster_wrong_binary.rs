//! A worker built from a different binary never runs a task: it logs the refusal, the
//! client's result for the task says `WrongBinary` naming both builds, and the message
//! leaves the queue (no endless redelivery), so a right worker started later finds a
//! clean queue and runs new tasks. A cluster pool's caller gets
//! `TaskError::Remote { kind: WrongBinary, .. }` naming the task.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use multiproc::{Process, RemoteFailure, TaskError};
use multiproc_nats::testing::NatsServer;
use multiproc_nats::{RawTask, RemoteError};

mod common;

multiproc_nats::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

/// Becomes the other build, as a worker: same pid, its log going to a file.
fn exec_worker((exe, url, pool, log): (String, String, String, String)) {
    let log = std::fs::File::create(log).unwrap();
    let e = std::process::Command::new(exe)
        .env(multiproc_nats::WORKER_ENV, "1")
        .env(multiproc_nats::URL_ENV, url)
        .env(multiproc_nats::POOL_ENV, pool)
        .env(multiproc_nats::PROCESSES_ENV, "1")
        .stderr(log)
        .exec();
    panic!("cannot run the other build: {e}");
}

const ACK_WAIT: Duration = Duration::from_secs(30);

/// A copy of this test binary with a few bytes appended: another build, as far as the
/// fingerprint goes. Its worker logs to the returned file.
struct OtherBuild {
    dir: std::path::PathBuf,
    log: std::path::PathBuf,
    worker: common::Worker,
}

impl OtherBuild {
    fn serve(server: &NatsServer, pool: &str) -> OtherBuild {
        let dir = std::env::temp_dir().join(format!("mpn-wrong-binary-{pool}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let other = dir.join("other-build");
        std::fs::copy("/proc/self/exe", &other).unwrap();
        std::fs::OpenOptions::new().append(true).open(&other).unwrap().write_all(b"another build").unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.join("worker.log");
        let args = (other.display().to_string(), server.url(), pool.to_string(), log.display().to_string());
        let mut stale = Process::new(exec_worker, args).daemon(true);
        stale.start().unwrap();
        OtherBuild { dir, log, worker: common::Worker(stale) }
    }
}

impl Drop for OtherBuild {
    fn drop(&mut self) {
        self.worker.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_cluster_pools_caller_hears_wrong_binary_naming_the_task() {
    let Some(server) = NatsServer::start("pool-wrong-binary") else { return };
    let stale = OtherBuild::serve(&server, "pwrong");
    let pool = common::cluster_pool(&server, "pwrong", ACK_WAIT, 1);
    let e = pool.apply(square, 3).unwrap_err();
    match &e {
        TaskError::Remote { task, kind: RemoteFailure::WrongBinary, message } => {
            assert!(task.contains("square"));
            assert!(message.contains(&stale.worker.pid().to_string()), "the message names the worker: {message}");
        }
        other => panic!("unexpected: {other:?}"),
    }
    let shown = e.to_string();
    assert!(shown.contains("square") && shown.contains("different build"), "{shown}");
    let all = pool.map_results(square, 0..5u64);
    assert!(all.iter().all(|r| matches!(r, Err(TaskError::Remote { kind: RemoteFailure::WrongBinary, .. }))));
}

#[test]
fn a_worker_of_another_build_refuses_and_the_queue_stays_clean() {
    let Some(server) = NatsServer::start("wrong-binary") else { return };
    let other = OtherBuild::serve(&server, "wrong");
    let (stale, log) = (&other.worker, other.log.clone());

    let client = common::client(&server, "wrong", ACK_WAIT);
    // The broker announces each message a worker terminates.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (nats, mut terminated) = rt.block_on(async {
        let nats = async_nats::connect(server.url()).await.unwrap();
        let sub = nats.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.MPROC_wrong.workers").await.unwrap();
        nats.flush().await.unwrap();
        (nats, sub)
    });
    let handles: Vec<_> = (0..3u64).map(|i| client.submit(RawTask::new(square, &i).unwrap()).unwrap()).collect();
    for h in handles {
        let o = h.wait_timeout(common::PATIENCE).expect("the refusal comes back");
        let e = o.result.unwrap_err();
        match &e.error {
            RemoteError::WrongBinary { worker_pid, client: mine, worker, .. } => {
                assert_eq!(*worker_pid, stale.pid());
                assert_eq!(*mine, multiproc::remote::fingerprint());
                assert_ne!(mine, worker);
            }
            other => panic!("unexpected: {other}"),
        }
        let msg = e.to_string();
        assert!(msg.contains("different build") && msg.contains("square"), "{msg}");
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("refusing task") && logged.contains("another binary"), "the worker says why: {logged}");
    assert_eq!(logged.matches("refusing task").count(), 3, "each task refused once: {logged}");

    // Nothing left behind: the refused tasks are gone from the queue, not waiting to
    // come back; a worker of the right build runs new tasks.
    let (messages, ack_pending) = rt.block_on(async {
        use futures_util::StreamExt;
        for _ in 0..3 {
            tokio::time::timeout(common::PATIENCE, terminated.next()).await.expect("each refused task is terminated");
        }
        let js = async_nats::jetstream::new(nats.clone());
        let mut stream = js.get_stream("MPROC_wrong").await.unwrap();
        let messages = stream.info().await.unwrap().state.messages;
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer("workers").await.unwrap();
        (messages, consumer.info().await.unwrap().num_ack_pending)
    });
    assert_eq!((messages, ack_pending), (0, 0));
    stale.kill();
    let _right = common::start_worker(&server, "wrong", 1, ACK_WAIT);
    let o = client.submit(RawTask::new(square, &9u64).unwrap()).unwrap().wait_timeout(common::PATIENCE).unwrap();
    assert_eq!(o.decode::<u64>().unwrap(), 81);
}
