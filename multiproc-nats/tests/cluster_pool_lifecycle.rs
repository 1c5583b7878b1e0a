//! A cluster pool's close, join, cancel and terminate follow the local pool's rules:
//! `join` before `close` is an error, a cancelled task or map gives `Cancelled`,
//! `terminate` fails what is unfinished with `Terminated` and removes the queued tasks
//! from the broker, and later submissions are `Closed`; an argument carrying a file
//! descriptor is refused with a clear error. No worker is needed for any of it.

use std::time::Duration;

use multiproc::{PoolError, TaskError};
use multiproc_nats::testing::NatsServer;

mod common;

multiproc_nats::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

fn file_len(f: multiproc::Fd) -> u64 {
    f.into_file().metadata().map(|m| m.len()).unwrap_or(0)
}

#[test]
fn close_join_cancel_and_terminate_keep_their_meaning() {
    let Some(server) = NatsServer::start("pool-lifecycle") else { return };
    let pool = common::cluster_pool(&server, "life", Duration::from_secs(30), 2);
    assert!(matches!(pool.join(), Err(PoolError::StillRunning)));

    let waiting = pool.apply_async(square, 1);
    let cancelled = pool.apply_async(square, 2);
    assert!(cancelled.cancel());
    assert!(matches!(cancelled.get(), Err(TaskError::Cancelled { .. })));
    let map = pool.map_async(square, 0..10);
    map.cancel();
    let all = map.get_all();
    assert_eq!(all.len(), 10);
    assert!(all.iter().all(|r| matches!(r, Err(TaskError::Cancelled { .. }))), "{all:?}");
    assert!(!waiting.ready());
    // A descriptor cannot leave this machine: a clear error, before anything travels.
    let fd = multiproc::Fd::new(std::fs::File::open("/proc/self/exe").unwrap());
    match pool.apply(file_len, fd) {
        Err(TaskError::Codec { task, message }) => {
            assert!(task.contains("file_len") && message.contains("file descriptor"), "{message}");
        }
        other => panic!("unexpected: {other:?}"),
    }

    pool.terminate();
    assert!(matches!(waiting.get(), Err(TaskError::Terminated { .. })));
    assert!(matches!(pool.apply(square, 3), Err(TaskError::Closed { .. })));
    pool.join().unwrap();
    let stats = pool.stats();
    assert_eq!((stats.tasks_cancelled, stats.tasks_terminated, stats.tasks_codec_failed), (11, 1, 1), "{stats:?}");

    // Nothing is left on the broker for a worker to run later.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let messages = rt.block_on(async {
        let nats = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(nats);
        js.get_stream("MPROC_life").await.unwrap().info().await.unwrap().state.messages
    });
    assert_eq!(messages, 0);
}

/// `terminate` racing submissions from other threads (gathered or sent at once) leaves
/// no submission waiting: each one settles, as `Terminated` or `Closed`. (A submission
/// registered while the client closed used to wait for ever.)
#[test]
fn terminate_racing_submissions_settles_every_one() {
    let Some(server) = NatsServer::start("pool-terminate-race") else { return };
    for round in 0..20 {
        let gather = round % 2 == 0;
        let config = multiproc_nats::ClientConfig::new(multiproc_nats::BrokerConfig::parse(&server.url()).unwrap())
            .queue(common::queue(&format!("race{round}"), Duration::from_secs(30)));
        let pool = multiproc_nats::ClusterPool::with_client(config).processes(2).gather(gather).connect().unwrap();
        let start = std::sync::Barrier::new(3);
        let handles = std::thread::scope(|s| {
            let submitters: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        (0..200).map(|n| pool.apply_async(square, n)).collect::<Vec<_>>()
                    })
                })
                .collect();
            start.wait();
            std::thread::yield_now();
            pool.terminate();
            submitters.into_iter().flat_map(|t| t.join().unwrap()).collect::<Vec<_>>()
        });
        for h in handles {
            assert!(h.wait_timeout(common::PATIENCE), "round {round} (gather {gather}): a submission never settled");
            match h.get() {
                Err(TaskError::Terminated { .. } | TaskError::Closed { .. }) => {}
                other => panic!("round {round}: unexpected {other:?}"),
            }
        }
        pool.join().unwrap();
    }
}
