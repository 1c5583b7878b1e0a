//! Connecting to the broker, and the JetStream layout of a pool's task queue.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use crate::config::{Auth, BrokerConfig, QueueConfig};
use crate::error::ClusterError;

/// Connects with the configured credentials and TLS; `on_event` hears of disconnections
/// and reconnections. The connection reconnects by itself, forever.
pub(crate) async fn connect(
    broker: &BrokerConfig,
    name: String,
    on_event: impl Fn(async_nats::Event) + Send + Sync + 'static,
) -> Result<async_nats::Client, ClusterError> {
    let fail = |message: String| ClusterError::Connect { broker: broker.to_string(), message };
    let mut opts = async_nats::ConnectOptions::new();
    match broker.auth() {
        Auth::None => {}
        Auth::UserPassword { user, password } => {
            opts = opts.user_and_password(user.clone(), password.expose().to_string());
        }
        Auth::Token(t) => opts = opts.token(t.expose().to_string()),
        Auth::NKey(seed) => opts = opts.nkey(seed.expose().to_string()),
        Auth::CredentialsFile(path) => {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|e| fail(format!("cannot read the credentials file `{}`: {}", path.display(), e.kind())))?;
        }
    }
    let tls = broker.tls();
    if tls.required {
        opts = opts.require_tls(true);
    }
    if let Some(ca) = &tls.root_certificates {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &tls.client_certificate {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let on_event = std::sync::Arc::new(on_event);
    opts =
        opts.name(name).connection_timeout(Duration::from_secs(5)).max_reconnects(None).event_callback(move |event| {
            let on_event = on_event.clone();
            async move { on_event(event) }
        });
    // The addresses carry no credentials: those go through the options above, so no
    // error of the client library can print them.
    let scheme = if tls.required { "tls" } else { "nats" };
    let addrs: Vec<async_nats::ServerAddr> = broker
        .servers()
        .iter()
        .map(|(host, port)| {
            let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
            format!("{scheme}://{host}:{port}").parse().map_err(|e: std::io::Error| fail(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    opts.connect(addrs).await.map_err(|e| fail(e.to_string()))
}

/// The pool's task queue: a work-queue stream (a task is removed once acked or
/// terminated) on file storage, so that tasks survive a broker restart, kept on
/// `replicas` servers of a cluster.
pub(crate) async fn task_stream(js: &jetstream::Context, queue: &QueueConfig) -> Result<stream::Stream, ClusterError> {
    let config = stream::Config {
        name: queue.stream(),
        subjects: vec![queue.task_subjects()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: queue.duplicate_window,
        num_replicas: queue.replicas,
        ..Default::default()
    };
    // Workers and clients that start together race to create the stream; the loser's
    // create fails (Debian's 2.9 server says "subjects overlap"), and a second look
    // finds the winner's stream.
    let mut tries = 0;
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => return checked_layout(stream, queue),
            Err(_) if tries < 3 => tries += 1,
            Err(e) => {
                let hint =
                    stream_hint(e.kind() == jetstream::context::CreateStreamErrorKind::JetStreamUnavailable, queue);
                return Err(ClusterError::Setup {
                    what: format!("the task stream `{}`", queue.stream()),
                    message: format!("{e}{hint}"),
                });
            }
        }
    }
}

/// What to do when the broker would not make the task stream: start JetStream, or give
/// the cluster the servers the replicas need.
fn stream_hint(no_jetstream: bool, queue: &QueueConfig) -> String {
    if no_jetstream {
        " (the server does not run JetStream, which keeps the task queue: start it with `nats-server -js`, \
         or `jetstream {}` in its configuration file)"
            .to_string()
    } else if queue.replicas > 1 {
        format!(
            " (it asks for {} replicas: the broker must be a JetStream cluster of at least as many servers)",
            queue.replicas
        )
    } else {
        String::new()
    }
}

/// A stream made by an older version (one subject for every build's tasks) cannot route
/// tasks by build: say so, rather than fail each publication.
fn checked_layout(stream: stream::Stream, queue: &QueueConfig) -> Result<stream::Stream, ClusterError> {
    if stream.cached_info().config.subjects.contains(&queue.task_subjects()) {
        return Ok(stream);
    }
    Err(ClusterError::Setup {
        what: format!("the task stream `{}`", queue.stream()),
        message: format!(
            "it exists with subjects {:?}, not `{}`: an older multiproc-nats made it; remove it \
             (`nats stream rm {}`) once it is drained, or use another pool name",
            stream.cached_info().config.subjects,
            queue.task_subjects(),
            queue.stream()
        ),
    })
}

/// The durable pull consumer all workers of build `build` share: it takes only that
/// build's tasks, so a worker never receives a task it cannot run. Explicit acks,
/// `ack_wait` before a silent worker's task goes to another, `max_deliver` tries at most.
pub(crate) async fn worker_consumer(
    stream: &stream::Stream,
    queue: &QueueConfig,
    build: u64,
) -> Result<consumer::PullConsumer, ClusterError> {
    let config = consumer::pull::Config {
        durable_name: Some(queue.consumer(build)),
        filter_subject: queue.task_subject(build),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: queue.ack_wait,
        max_deliver: queue.max_deliver,
        max_ack_pending: queue.max_ack_pending,
        ..Default::default()
    };
    // The same race as for the stream, among the pool's first workers.
    let mut tries = 0;
    loop {
        match stream.get_or_create_consumer(&queue.consumer(build), config.clone()).await {
            Ok(consumer) => return Ok(consumer),
            Err(_) if tries < 3 => tries += 1,
            Err(e) => {
                return Err(ClusterError::Setup {
                    what: format!("the worker consumer of `{}`", queue.stream()),
                    message: e.to_string(),
                });
            }
        }
    }
}

/// The subject on which the broker announces that it gave up on a task of build `build`.
pub(crate) fn max_deliveries_subject(queue: &QueueConfig, build: u64) -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}", queue.stream(), queue.consumer(build))
}

/// A short random id, unique enough to name a client among those of a pool.
pub(crate) fn random_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    format!("{:016x}", h.finish())
}
