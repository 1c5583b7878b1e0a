//! A worker built from a different binary never runs a task: it logs the refusal, the
//! client's result for the task says `WrongBinary` naming both builds, and the message
//! leaves the queue (no endless redelivery), so a right worker started later finds a
//! clean queue and runs new tasks.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use multiproc::Process;
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
        .env(multiproc_nats::SLOTS_ENV, "1")
        .stderr(log)
        .exec();
    panic!("cannot run the other build: {e}");
}

const ACK_WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_worker_of_another_build_refuses_and_the_queue_stays_clean() {
    let Some(server) = NatsServer::start("wrong-binary") else { return };
    let dir = std::env::temp_dir().join(format!("mpn-wrong-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let other = dir.join("other-build");
    std::fs::copy("/proc/self/exe", &other).unwrap();
    std::fs::OpenOptions::new().append(true).open(&other).unwrap().write_all(b"another build").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.join("worker.log");

    let args = (other.display().to_string(), server.url(), "wrong".to_string(), log.display().to_string());
    let mut stale = Process::new(exec_worker, args).daemon(true);
    stale.start().unwrap();
    let stale = common::Worker(stale);

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
    let _ = std::fs::remove_dir_all(&dir);
}
