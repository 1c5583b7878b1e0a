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
/// `replicas` servers of a cluster. Replicas not given are the existing stream's, else
/// the most a JetStream cluster (`clustered`) offers up to 3, else 1: `queue.replicas`
/// says which, for the pool's other streams.
pub(crate) async fn task_stream(
    js: &jetstream::Context,
    queue: &mut QueueConfig,
    clustered: bool,
) -> Result<stream::Stream, ClusterError> {
    if !queue.given.replicas {
        queue.replicas = 1;
        if clustered {
            for n in [3, 2] {
                queue.replicas = n;
                if let Ok(stream) = js.get_or_create_stream(task_stream_config(queue)).await {
                    queue.replicas = stream.cached_info().config.num_replicas.max(1);
                    return checked_layout(stream, queue);
                }
            }
            queue.replicas = 1;
        }
    }
    let config = task_stream_config(queue);
    // Workers and clients that start together race to create the stream; the loser's
    // create fails (Debian's 2.9 server says "subjects overlap"), and a second look
    // finds the winner's stream.
    let mut tries = 0;
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => {
                if !queue.given.replicas {
                    queue.replicas = stream.cached_info().config.num_replicas.max(1);
                }
                return checked_layout(stream, queue);
            }
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

fn task_stream_config(queue: &QueueConfig) -> stream::Config {
    stream::Config {
        name: queue.stream(),
        subjects: vec![queue.task_subjects()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: queue.duplicate_window,
        num_replicas: queue.replicas,
        ..Default::default()
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
        let has = stream.cached_info().config.num_replicas.max(1);
        let conflicts = conflicts([("replicas", queue.given.replicas, has.to_string(), queue.replicas.to_string())]);
        return settings_agree(conflicts, &format!("the task stream `{}`", queue.stream())).map(|()| stream);
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
            Ok(consumer) => return consumer_agrees(consumer, queue),
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

/// A consumer that exists keeps its settings: one given otherwise is an error.
fn consumer_agrees(
    consumer: consumer::PullConsumer,
    queue: &QueueConfig,
) -> Result<consumer::PullConsumer, ClusterError> {
    let has = &consumer.cached_info().config;
    let conflicts = conflicts([
        ("ack_wait", queue.given.ack_wait, format!("{:?}", has.ack_wait), format!("{:?}", queue.ack_wait)),
        ("max_deliver", queue.given.max_deliver, has.max_deliver.to_string(), queue.max_deliver.to_string()),
        (
            "max_ack_pending",
            queue.given.max_ack_pending,
            has.max_ack_pending.to_string(),
            queue.max_ack_pending.to_string(),
        ),
    ]);
    let what = format!("the consumer `{}` of `{}`", consumer.cached_info().name, queue.stream());
    settings_agree(conflicts, &what).map(|()| consumer)
}

/// The given settings whose value differs from the queue's: `(name, given, has, asks)`.
fn conflicts<const N: usize>(settings: [(&str, bool, String, String); N]) -> Vec<String> {
    settings
        .into_iter()
        .filter(|(_, given, has, asks)| *given && has != asks)
        .map(|(name, _, has, asks)| format!("{name} is {has}, this one asks for {asks}"))
        .collect()
}

fn settings_agree(conflicts: Vec<String>, what: &str) -> Result<(), ClusterError> {
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(ClusterError::Setup {
        what: what.to_string(),
        message: format!(
            "it exists with other settings ({}): settings apply when the queue is created, so give the same \
             ones, leave them out, or remove the queue once drained",
            conflicts.join("; ")
        ),
    })
}

/// The stream of the clients' leases: one message per client on its lease subject,
/// the latest kept, gone once it is older than the lease (the stream's `max_age`).
pub(crate) async fn lease_stream(js: &jetstream::Context, queue: &QueueConfig) -> Result<stream::Stream, ClusterError> {
    let config = stream::Config {
        name: queue.lease_stream(),
        subjects: vec![queue.lease_subject("*")],
        max_messages_per_subject: 1,
        max_age: queue.client_lease,
        storage: stream::StorageType::File,
        num_replicas: queue.replicas,
        ..Default::default()
    };
    let what = format!("the lease stream `{}`", queue.lease_stream());
    let stream = made_stream(js, config, &what).await?;
    let has = stream.cached_info().config.max_age;
    let asks = queue.client_lease;
    let conflicts = conflicts([("client_lease", queue.given.client_lease, format!("{has:?}"), format!("{asks:?}"))]);
    settings_agree(conflicts, &what).map(|()| stream)
}

/// Gets the stream `config` describes, creating it if it is missing; `what` names it in
/// the error. Workers and clients that start together race to create a stream: the
/// loser's create fails, and a second look finds the winner's (as for the task stream).
async fn made_stream(
    js: &jetstream::Context,
    config: stream::Config,
    what: &str,
) -> Result<stream::Stream, ClusterError> {
    let mut tries = 0;
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(_) if tries < 3 => tries += 1,
            Err(e) => return Err(ClusterError::Setup { what: what.to_string(), message: e.to_string() }),
        }
    }
}

/// The stream of the workers' heartbeats: the latest of each worker, gone once older than
/// the client lease.
pub(crate) async fn presence_stream(
    js: &jetstream::Context,
    queue: &QueueConfig,
) -> Result<stream::Stream, ClusterError> {
    let config = stream::Config {
        name: queue.presence_stream(),
        subjects: vec![queue.presence_subject("*")],
        max_messages_per_subject: 1,
        max_age: queue.client_lease,
        storage: stream::StorageType::Memory,
        num_replicas: queue.replicas,
        ..Default::default()
    };
    made_stream(js, config, &format!("the worker stream `{}`", queue.presence_stream())).await
}

/// The stream where workers store results until their client takes them: a work queue
/// (a result leaves once its client acked it) on one subject per client, on file storage,
/// kept at most `result_ttl` (the results of a client that never came back).
pub(crate) async fn result_stream(
    js: &jetstream::Context,
    queue: &QueueConfig,
) -> Result<stream::Stream, ClusterError> {
    let config = stream::Config {
        name: queue.result_stream(),
        subjects: vec![queue.result_subjects()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        max_age: queue.result_ttl,
        num_replicas: queue.replicas,
        ..Default::default()
    };
    let what = format!("the result stream `{}`", queue.result_stream());
    let stream = made_stream(js, config, &what).await?;
    let has = stream.cached_info().config.max_age;
    let asks = queue.result_ttl;
    let conflicts = conflicts([("result_ttl", queue.given.result_ttl, format!("{has:?}"), format!("{asks:?}"))]);
    settings_agree(conflicts, &what).map(|()| stream)
}

/// The stream where workers note, while a task of many items runs, which of its items
/// already have their results stored (one small record per task, the latest only,
/// removed once the task is acked, else kept at most `result_ttl`): a redelivery of the
/// task reads it and runs only the others.
pub(crate) async fn progress_stream(
    js: &jetstream::Context,
    queue: &QueueConfig,
) -> Result<stream::Stream, ClusterError> {
    let config = stream::Config {
        name: queue.progress_stream(),
        subjects: vec![queue.progress_subject("*", "*")],
        max_messages_per_subject: 1,
        max_age: queue.result_ttl,
        storage: stream::StorageType::File,
        num_replicas: queue.replicas,
        ..Default::default()
    };
    made_stream(js, config, &format!("the progress stream `{}`", queue.progress_stream())).await
}

/// The durable consumer through which client `id` takes its results: only its own
/// subject, from the first stored. It outlives a disconnection of the client (the broker
/// removes it once unused for the client lease; the client makes it again when back, and
/// finds every result still stored). A result the broker sent as it went down comes
/// again after [`result_ack_wait`].
pub(crate) async fn result_consumer(
    stream: &stream::Stream,
    queue: &QueueConfig,
    id: &str,
) -> Result<consumer::PullConsumer, ClusterError> {
    let config = consumer::pull::Config {
        durable_name: Some(queue.result_consumer(id)),
        filter_subject: queue.result_subject(id),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: result_ack_wait(queue.ack_wait),
        inactive_threshold: queue.client_lease.max(Duration::from_secs(5)),
        ..Default::default()
    };
    stream.get_or_create_consumer(&queue.result_consumer(id), config).await.map_err(|e| ClusterError::Setup {
        what: format!("the result consumer of client {id} on `{}`", queue.result_stream()),
        message: e.to_string(),
    })
}

/// How long the broker waits for a client's ack of a result before it sends the result
/// again: a result unacked that long was lost on the way, as when the broker went down
/// with it in flight, and its caller waits that long for it: the queue's `ack_wait`, as
/// for a task. A client acks each result once it has taken it, but takes a pull's
/// results one after the other, so the wait is at least 5 s (a client busy with a burst
/// of results is not sent them twice) and at most the broker's default of 30 s.
fn result_ack_wait(ack_wait: Duration) -> Duration {
    ack_wait.clamp(Duration::from_secs(5), Duration::from_secs(30))
}

/// Whether client `id` holds its lease; `None` when the broker cannot say.
pub(crate) async fn lease_held(leases: &stream::Stream, queue: &QueueConfig, id: &str) -> Option<bool> {
    match leases.get_last_raw_message_by_subject(&queue.lease_subject(id)).await {
        Ok(_) => Some(true),
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Some(false),
        Err(_) => None,
    }
}

/// The broker's word that it gave up on a task of build `build`, from now on: read from
/// the pool's stream of lost tasks (`MPROC_P_lost`, which keeps the broker's advisories
/// for the result TTL) through an ordered consumer, which resumes where it was after a
/// disconnection.
pub(crate) async fn lost_tasks(
    js: &jetstream::Context,
    queue: &QueueConfig,
    build: u64,
) -> Result<consumer::pull::Ordered, ClusterError> {
    let what = format!("the stream of lost tasks `{}`", queue.lost_stream());
    let fail = |e: &dyn std::fmt::Display| ClusterError::Setup { what: what.clone(), message: e.to_string() };
    let config = stream::Config {
        name: queue.lost_stream(),
        subjects: vec![max_deliveries_subject(queue, build).replace(&queue.consumer(build), "*")],
        max_age: queue.result_ttl,
        storage: stream::StorageType::File,
        num_replicas: queue.replicas,
        ..Default::default()
    };
    let lost = made_stream(js, config, &what).await?;
    let ordered = consumer::pull::OrderedConfig {
        filter_subject: max_deliveries_subject(queue, build),
        deliver_policy: consumer::DeliverPolicy::New,
        ..Default::default()
    };
    let consumer = lost.create_consumer(ordered).await.map_err(|e| fail(&e))?;
    consumer.messages().await.map_err(|e| fail(&e))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_result_comes_again_after_the_queues_ack_wait_within_bounds() {
        assert_eq!(result_ack_wait(Duration::from_secs(10)), Duration::from_secs(10), "the default");
        assert_eq!(result_ack_wait(Duration::from_millis(100)), Duration::from_secs(5));
        assert_eq!(result_ack_wait(Duration::from_secs(600)), Duration::from_secs(30));
    }

    #[test]
    fn only_given_settings_that_differ_conflict() {
        let found = conflicts([
            ("ack_wait", true, "2s".into(), "5s".into()),
            ("max_deliver", false, "3".into(), "5".into()),
            ("replicas", true, "3".into(), "3".into()),
        ]);
        assert_eq!(found, ["ack_wait is 2s, this one asks for 5s"]);
        assert!(settings_agree(vec![], "x").is_ok());
        let e = settings_agree(found, "the consumer `c`").unwrap_err().to_string();
        assert!(e.contains("the consumer `c`") && e.contains("settings apply when the queue is created"), "{e}");
    }
}
