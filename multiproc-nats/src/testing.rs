//! A `nats-server` of one's own, for tests, examples and benchmarks: JetStream on, a free
//! loopback port, a fresh store directory, killed and removed at drop.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::QueueConfig;

/// A `nats-server -js` started for one test.
///
/// ```
/// use multiproc_nats::testing::NatsServer;
///
/// // `None` (and a line saying why) where nats-server is not installed; a panic under CI.
/// let Some(mut server) = NatsServer::start("doc") else { return };
/// assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
/// server.kill(); // as a crash would; `restart` brings it back on the same port and store
/// server.restart();
/// ```
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    jetstream: bool,
}

/// Where `nats-server` is: `$NATS_SERVER` when set (`None` if nothing is there), else
/// the `PATH`, else `/usr/sbin` (where the Debian package puts it).
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// Whether this run is a CI run: `CI` set to anything but empty, `0` or `false` (CI
/// services set `CI=true` or `CI=1`; `.ci/run` sets it too).
fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

impl NatsServer {
    /// Starts a server, or returns `None` after printing why the test is skipped when
    /// `nats-server` is not installed. Under CI (`CI` set) a missing server panics instead:
    /// CI installs it, so its absence there is a failure, not a skip.
    pub fn start(tag: &str) -> Option<NatsServer> {
        NatsServer::start_with(tag, &[])
    }

    /// Like [`start`](NatsServer::start), with more command-line arguments (e.g.
    /// `["--user", "u", "--pass", "p"]`).
    pub fn start_with(tag: &str, args: &[&str]) -> Option<NatsServer> {
        let Some(binary) = nats_server_binary() else {
            let msg = "nats-server not found: install the Debian package `nats-server` \
                       (apt-get install nats-server) or set NATS_SERVER to its path";
            if on_ci() {
                panic!("{msg} (CI is set: a missing broker is a failure here, not a skip)");
            }
            // Straight to the standard error, past the test harness's capture, so the
            // skip shows in a normal run.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED {tag}: {msg}");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("multiproc-nats-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot create the server's store directory");
        let args = args.iter().map(|s| s.to_string()).collect();
        let mut server = NatsServer { child: None, binary, port: 0, dir, args, jetstream: true };
        server.launch();
        Some(server)
    }

    /// Like [`start`](NatsServer::start), without JetStream: a broker that cannot keep a
    /// task queue.
    pub fn start_without_jetstream(tag: &str) -> Option<NatsServer> {
        let mut server = NatsServer::start(tag)?;
        server.jetstream = false;
        server.restart();
        Some(server)
    }

    fn launch(&mut self) {
        // Port -1 makes the server pick a free one, which it then logs; a restart reuses it.
        let port = if self.port == 0 { "-1".to_string() } else { self.port.to_string() };
        let mut child = Command::new(&self.binary)
            .args(if self.jetstream { &["-js", "-sd"][..] } else { &[] })
            .args(self.jetstream.then(|| self.dir.join("store")))
            .args(["-a", "127.0.0.1", "-p", &port])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        // Reads the log to its end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut port = None;
            let mut ready = false;
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !ready {
                    if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                        port = rest.trim().rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                    }
                    seen.push(line.clone());
                    if line.contains("Server is ready") {
                        ready = true;
                        let _ = tx.send(Ok(port.unwrap_or(0)));
                    }
                }
            }
            if !ready {
                let _ = tx.send(Err(seen.join("\n")));
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(port)) => {
                if self.port == 0 {
                    self.port = port;
                }
                self.child = Some(child);
            }
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("nats-server did not become ready: {other:?}");
            }
        }
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL) and waits for it to end.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same store: what it had stored
    /// (streams, consumers, tasks) is back.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A JetStream cluster of `nats-server`s on 127.0.0.1, for tests: each node a
/// [`NatsServer`] named `n0`, `n1`, ... with routes to all the others.
///
/// ```
/// use multiproc_nats::testing::NatsCluster;
///
/// let Some(mut cluster) = NatsCluster::start("doc", 3) else { return };
/// assert_eq!(cluster.url().split(',').count(), 3); // what clients and workers are given
/// cluster.node(0).kill(); // one node down: the other two still hold a quorum
/// ```
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

/// `n` distinct free loopback ports (free when asked; the cluster binds them right
/// after). Held together while chosen, so that no two are the same.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("a bound socket has an address").port()).collect()
}

impl NatsCluster {
    /// Starts `n` nodes and waits until JetStream answers on each; `None` (after saying
    /// why) when `nats-server` is not installed, as [`NatsServer::start`].
    pub fn start(tag: &str, n: usize) -> Option<NatsCluster> {
        let route_ports = free_ports(n);
        let routes: Vec<String> = route_ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
        let mut nodes = Vec::new();
        for (i, port) in route_ports.iter().enumerate() {
            let (name, cluster) = (format!("n{i}"), format!("nats://127.0.0.1:{port}"));
            let others: Vec<&str> = routes.iter().filter(|r| **r != cluster).map(String::as_str).collect();
            let args =
                ["--server_name", &name, "--cluster_name", tag, "--cluster", &cluster, "--routes", &others.join(",")];
            nodes.push(NatsServer::start_with(&format!("{tag}-{name}"), &args)?);
        }
        let cluster = NatsCluster { nodes };
        cluster.wait_for_jetstream();
        Some(cluster)
    }

    /// Waits until every node answers JetStream requests (the cluster has elected its
    /// meta leader).
    fn wait_for_jetstream(&self) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async {
            for node in &self.nodes {
                let nats = async_nats::connect(node.url()).await.expect("a cluster node accepts a connection");
                let mut tries = 0;
                // The account's JetStream information, asked raw: an answer without an
                // error means the meta leader is there (the client's own query cannot
                // read every server version's answer).
                while !jetstream_answers(&nats).await {
                    tries += 1;
                    assert!(tries < 600, "the cluster's JetStream never became available");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }

    /// Every node's URL, in a list (`nats://127.0.0.1:p0,nats://127.0.0.1:p1,...`), as
    /// clients and workers give it.
    pub fn url(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(NatsServer::url).collect();
        urls.join(",")
    }

    /// Node `i` (named `n<i>`).
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }
}

async fn jetstream_answers(nats: &async_nats::Client) -> bool {
    match nats.request("$JS.API.INFO", bytes::Bytes::new()).await {
        Ok(reply) => {
            serde_json::from_slice::<serde_json::Value>(&reply.payload).is_ok_and(|v| v.get("error").is_none())
        }
        Err(_) => false,
    }
}

/// The subjects on which the workers of `queue`'s pool note, while a task of many items
/// runs, which of its items have their results stored: a test subscribes to them to
/// wait for such a note.
pub fn progress_subjects(queue: &QueueConfig) -> String {
    queue.progress_subject("*", "*")
}

/// Which items a note (a message on [`progress_subjects`]) names as having their results
/// stored, as runs `(first item, count)`; `None` for a message that is not one.
pub fn noted_items(note: &[u8]) -> Option<Vec<(u32, u32)>> {
    crate::worker::noted_runs(note)
}
