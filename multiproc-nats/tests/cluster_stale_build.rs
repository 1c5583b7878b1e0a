//! A worker built from another binary never even receives a task it cannot run: tasks
//! travel on their build's subject, and each build's workers share a consumer of that
//! subject only. Among good workers a stale one takes nothing, so no task fails; alone,
//! it idles and says in its log that tasks of another build wait, and the tasks wait on
//! the queue for a worker of their build, which runs them when it comes.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use multiproc::Process;
use multiproc_nats::RawTask;
use multiproc_nats::testing::NatsServer;

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
        // Idle workers look at the queue every third of it.
        .env(multiproc_nats::ACK_WAIT_ENV, "0.3")
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
        let dir = std::env::temp_dir().join(format!("mpn-stale-build-{pool}-{}", std::process::id()));
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

    /// The worker's log once `ready(log)` holds (a hang guard panics after PATIENCE).
    fn wait_for_log(&self, ready: impl Fn(&str) -> bool, what: &str) -> String {
        let started = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if ready(&log) {
                return log;
            }
            assert!(started.elapsed() < common::PATIENCE, "the stale worker never logged {what}: {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OtherBuild {
    fn drop(&mut self) {
        self.worker.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The queue's consumers: `(name, tasks it delivered)`.
fn consumers(server: &NatsServer, stream: &str) -> Vec<(String, u64)> {
    use futures_util::StreamExt;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let nats = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(nats);
        let stream = js.get_stream(stream).await.unwrap();
        let mut infos = stream.consumers();
        let mut all = Vec::new();
        while let Some(info) = infos.next().await {
            let info = info.unwrap();
            all.push((info.name, info.delivered.stream_sequence));
        }
        all.sort();
        all
    })
}

/// Waits until the stale worker has its consumer on the queue: it is connected and
/// pulling, so a task it could take would come to it.
fn wait_for_consumers(server: &NatsServer, stream: &str, n: usize) {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let js = rt.block_on(async { async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap()) });
    loop {
        let count = rt.block_on(async {
            let mut s = js.get_stream(stream).await.ok()?;
            Some(s.info().await.ok()?.state.consumer_count)
        });
        if count.is_some_and(|c| c >= n) {
            return;
        }
        assert!(started.elapsed() < common::PATIENCE, "no consumer appeared on {stream}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stale_worker_among_good_ones_fails_no_task() {
    let Some(server) = NatsServer::start("stale-among-good") else { return };
    let stale = OtherBuild::serve(&server, "stale");
    wait_for_consumers(&server, "MPROC_stale", 1);
    let _good =
        [common::start_worker(&server, "stale", 1, ACK_WAIT), common::start_worker(&server, "stale", 1, ACK_WAIT)];
    let pool = common::cluster_pool(&server, "stale", ACK_WAIT, 2);
    let results = pool.map_results(square, 0..200u64);
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(failed.is_empty(), "{} of 200 tasks failed, e.g. {:?}", failed.len(), failed.first());
    assert_eq!(results.into_iter().map(Result::unwrap).collect::<Vec<_>>(), (0..200).map(square).collect::<Vec<_>>());

    let delivered = consumers(&server, "MPROC_stale");
    let own = common::consumer();
    assert_eq!(delivered.len(), 2, "one consumer per build: {delivered:?}");
    for (name, n) in &delivered {
        if *name == own {
            assert!(*n > 0, "this build's consumer delivered the tasks: {delivered:?}");
        } else {
            assert_eq!(*n, 0, "the other build's consumer never delivered a task: {delivered:?}");
        }
    }
    let log = std::fs::read_to_string(&stale.log).unwrap();
    assert!(!log.contains("refusing"), "the stale worker never saw a task: {log}");
}

#[test]
fn a_stale_worker_alone_idles_says_why_and_the_tasks_wait_for_their_build() {
    let Some(server) = NatsServer::start("stale-alone") else { return };
    let stale = OtherBuild::serve(&server, "alone");
    let client = common::client(&server, "alone", ACK_WAIT);
    let handles: Vec<_> = (0..3u64).map(|i| client.submit(RawTask::new(square, &i).unwrap()).unwrap()).collect();

    let build = format!("{:016x}", multiproc::remote::fingerprint());
    let said = format!("3 tasks wait in the queue for workers of other builds (3 of build {build})");
    let log = stale.wait_for_log(|log| log.contains(&said), &said);
    assert!(log.contains("start workers from the binary that submits them"), "{log}");
    assert!(!log.contains("refusing"), "the stale worker never saw a task: {log}");
    assert!(handles.iter().all(|h| !h.is_ready()), "the tasks wait for a worker of their build");

    let right = common::start_worker(&server, "alone", 1, ACK_WAIT);
    for (i, h) in handles.into_iter().enumerate() {
        let o = h.wait_timeout(common::PATIENCE).expect("a worker of the right build runs the waiting tasks");
        assert_eq!(o.decode::<u64>().unwrap(), square(i as u64));
        assert_eq!(o.ran_on.map(|r| r.worker_pid), Some(right.pid()));
    }
    drop(stale);
}
