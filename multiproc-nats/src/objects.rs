//! Payloads over the broker's message limit: a task's arguments, or an item's result, too
//! large for one message (`max_payload`, 1 MiB by default) travel through the pool's
//! JetStream object store (`MPROC_<pool>_objects`), and the message carries only a head
//! naming the object.
//!
//! Why an object store rather than a larger `max_payload`: the server's limit guards
//! every connection's buffers, a cluster's operator may not own it, and a message is held
//! whole in memory at each hop; an object travels in chunks under the limit, checked by
//! its SHA-256 digest on reading.
//!
//! The invariant: **every object written here is deleted by its reader, or expires.**
//!
//! - A task's arguments (`<client>-<task>-args`) are written by the client before the
//!   task's message, and deleted by the client once every item of the task has its
//!   outcome (a result, a failure, a cancellation, a deadline, the client's close). A
//!   worker reads them; one that finds them gone (its task settled meanwhile) answers
//!   with [`RemoteError::Object`], which the client, no longer waiting, drops.
//! - An item's result (`<client>-<task>-d<delivery>-r<item>`) is written by the worker
//!   before the result message naming it, and deleted by the client once read, before
//!   the result is handed out; a result message for a task that no longer waits deletes
//!   its object unread. A worker that stores it twice (a retry) overwrites it.
//! - A closing client deletes every object bearing its id. What a vanished client or a
//!   worker after its client's close leaves expires after the queue's `result_ttl`, the
//!   bucket's `max_age`.
//!
//! - An upload the broker's death cut short leaves chunks no description names: the
//!   writer's next try purges them once the broker is back (see [`Objects::put`]).
//!
//! Deleting also removes the object's deletion marker, so a bucket with nothing in
//! flight holds no message at all.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, object_store, stream};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use crate::config::QueueConfig;
use crate::envelope::RemoteError;
use crate::error::ClusterError;

/// How long one request about an object (its deletion, a listing) may take before it
/// counts as failed.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// How long storing or reading one object whole may take before it counts as failed
/// (some seconds for 64 MiB on a loaded machine; a broker that stopped answering midway
/// must not hold a task for ever).
const TRANSFER_LIMIT: Duration = Duration::from_secs(300);

/// The pool's object store: where payloads too large for a message travel.
#[derive(Clone)]
pub(crate) struct Objects {
    js: jetstream::Context,
    store: object_store::ObjectStore,
    /// The bucket's stream, for removing deletion markers.
    stream: stream::Stream,
    bucket: String,
    /// The size of the chunks an object is stored in (each one message).
    chunk: usize,
}

/// The object holding the items of task `task` of client `client`.
pub(crate) fn args_object(client: &str, task: u64) -> String {
    format!("{client}-{task}-args")
}

/// The object holding the result of item `item` of task `task` of client `client`, as
/// its `delivery`-th delivery produced it.
pub(crate) fn result_object(client: &str, task: u64, delivery: u64, item: u32) -> String {
    format!("{client}-{task}-d{delivery}-r{item}")
}

/// The size of the chunks an object is stored in under a broker limit of `max_payload`
/// (0: none): as large as a message may be less room for headers, so that 64 MiB take
/// some 64 round trips, not 512.
pub(crate) fn chunk_size(max_payload: usize) -> usize {
    let room = match max_payload {
        0 => 1 << 20,
        m if m > 8192 => m - 4096,
        m => m / 2,
    };
    room.clamp(1, 8 << 20)
}

/// Finds or creates the pool's object store, kept as the queue's other streams are
/// (`replicas`, on file), its objects gone after `result_ttl` at the latest.
pub(crate) async fn bucket(
    js: &jetstream::Context,
    queue: &QueueConfig,
    max_payload: usize,
) -> Result<Objects, ClusterError> {
    let bucket = queue.object_bucket();
    let what = format!("the object store `{bucket}`");
    let config = object_store::Config {
        bucket: bucket.clone(),
        description: Some("multiproc-nats: payloads over the broker's message limit".into()),
        max_age: queue.result_ttl,
        num_replicas: queue.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    // Clients and workers that start together race to create it, as for the task stream.
    let mut tries = 0;
    let store = loop {
        match js.get_object_store(&bucket).await {
            Ok(store) => break store,
            Err(_) => match js.create_object_store(config.clone()).await {
                Ok(store) => break store,
                Err(_) if tries < 3 => tries += 1,
                Err(e) => return Err(ClusterError::Setup { what, message: e.to_string() }),
            },
        }
    };
    let stream = js
        .get_stream(format!("OBJ_{bucket}"))
        .await
        .map_err(|e| ClusterError::Setup { what, message: e.to_string() })?;
    Ok(Objects { js: js.clone(), store, stream, bucket, chunk: chunk_size(max_payload) })
}

impl Objects {
    /// Stores `bytes` as object `name` (replacing one of that name), retrying while the
    /// broker does not confirm, until `deadline`.
    ///
    /// Each try stores its chunks on a subject of its own. A try cut short (the broker
    /// went away midway) leaves chunks that no description names, so no deletion would
    /// ever find them: they are purged here once a later try gets through (or, with the
    /// broker away to the end, expire).
    pub(crate) async fn put(&self, name: &str, bytes: &[u8], deadline: Instant) -> Result<(), RemoteError> {
        let mut backoff = Duration::from_millis(50);
        let mut cut_short = Vec::new();
        loop {
            let chunks = self.chunk_subject(&crate::broker::random_id());
            let error = match tokio::time::timeout(TRANSFER_LIMIT, self.put_once(name, bytes, &chunks)).await {
                Ok(Ok(())) => {
                    self.purge(&cut_short).await;
                    return Ok(());
                }
                Ok(Err(e)) => e,
                Err(_) => format!("not stored within {TRANSFER_LIMIT:?}"),
            };
            cut_short.push(chunks);
            if Instant::now() + backoff >= deadline {
                self.purge(&cut_short).await;
                let message = format!("could not be stored: {error}");
                return Err(RemoteError::Object { object: name.to_string(), message });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Stores `bytes` as object `name` once, its chunks on subject `chunks`, as the object
    /// store's own `put` does (so its `get` reads it, digest checked), then purges the
    /// chunks of the object it replaces. Written here rather than calling that `put`
    /// because its chunk subject is its own secret: one it cut short could not be found.
    async fn put_once(&self, name: &str, bytes: &[u8], chunks: &str) -> Result<(), String> {
        let replaced = self.store.info(name).await.ok().filter(|info| !info.deleted);
        for chunk in bytes.chunks(self.chunk) {
            let ack = self.js.publish(chunks.to_string(), Bytes::copy_from_slice(chunk)).await;
            ack.map_err(|e| e.to_string())?.await.map_err(|e| format!("a chunk: {e}"))?;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let info = object_store::ObjectInfo {
            name: name.to_string(),
            description: None,
            metadata: Default::default(),
            headers: None,
            options: Some(object_store::ObjectOptions { link: None, max_chunk_size: Some(self.chunk) }),
            bucket: self.bucket.clone(),
            nuid: chunks.rsplit('.').next().unwrap_or_default().to_string(),
            size: bytes.len(),
            chunks: bytes.len().div_ceil(self.chunk),
            modified: None,
            digest: Some(format!("SHA-256={}", URL_SAFE.encode(digest.as_ref()))),
            deleted: false,
        };
        let description = serde_json::to_vec(&info).map_err(|e| e.to_string())?;
        // The description replaces the one before it (a roll-up of its subject).
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Rollup", "sub");
        let ack = self.js.publish_with_headers(self.description_subject(name), headers, description.into()).await;
        ack.map_err(|e| e.to_string())?.await.map_err(|e| format!("its description: {e}"))?;
        if let Some(old) = replaced {
            self.purge(&[self.chunk_subject(&old.nuid)]).await;
        }
        Ok(())
    }

    /// Purges the chunks on `subjects` (best effort: the broker may be away).
    async fn purge(&self, subjects: &[String]) {
        for subject in subjects {
            let _ = tokio::time::timeout(REQUEST_LIMIT, self.stream.purge().filter(subject)).await;
        }
    }

    /// The subject of the chunks of the object stored under `nuid` (as the object
    /// store names it).
    fn chunk_subject(&self, nuid: &str) -> String {
        format!("$O.{}.C.{nuid}", self.bucket)
    }

    /// The subject of object `name`'s description (and of its deletion marker).
    fn description_subject(&self, name: &str) -> String {
        format!("$O.{}.M.{}", self.bucket, URL_SAFE.encode(name))
    }

    /// The size of object `name` in bytes, from its description; `None` when it cannot
    /// be read (the read that follows says why).
    pub(crate) async fn size_of(&self, name: &str) -> Option<u64> {
        match tokio::time::timeout(REQUEST_LIMIT, self.store.info(name)).await {
            Ok(Ok(info)) => Some(info.size as u64),
            _ => None,
        }
    }

    /// Reads object `name` whole (its digest checked). One that is not there is an error
    /// saying so; [`Fetch::Retry`] is for what may work later (the broker is away).
    pub(crate) async fn get(&self, name: &str) -> Fetch {
        let failed = |message: String| RemoteError::Object { object: name.to_string(), message };
        let read = async {
            let mut object = match self.store.get(name).await {
                Ok(object) => object,
                Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Err(None),
                Err(e) => return Err(Some(e.to_string())),
            };
            let mut bytes = Vec::with_capacity(object.info().size);
            object.read_to_end(&mut bytes).await.map_err(|e| Some(e.to_string()))?;
            Ok(bytes)
        };
        match tokio::time::timeout(TRANSFER_LIMIT, read).await {
            Ok(Ok(bytes)) => Fetch::Got(bytes),
            Ok(Err(None)) => Fetch::Failed(failed(
                "not found: deleted once its task settled (this is a redelivery), or expired after the queue's \
                 result_ttl"
                    .into(),
            )),
            Ok(Err(Some(e))) => Fetch::Retry(failed(format!("could not be read: {e}"))),
            Err(_) => Fetch::Retry(failed(format!("could not be read within {TRANSFER_LIMIT:?}"))),
        }
    }

    /// Deletes object `name` and its deletion marker (best effort: one already gone is
    /// fine).
    pub(crate) async fn delete(&self, name: &str) {
        let _ = tokio::time::timeout(REQUEST_LIMIT, self.store.delete(name)).await;
        let _ = tokio::time::timeout(REQUEST_LIMIT, self.stream.purge().filter(self.description_subject(name))).await;
    }

    /// Deletes every object whose name starts with `prefix` (a closing client's).
    pub(crate) async fn delete_all_of(&self, prefix: &str) {
        let Ok(Ok(mut list)) = tokio::time::timeout(REQUEST_LIMIT, self.store.list()).await else { return };
        let mut names = Vec::new();
        while let Ok(Some(Ok(info))) = tokio::time::timeout(REQUEST_LIMIT, list.next()).await {
            if info.name.starts_with(prefix) {
                names.push(info.name);
            }
        }
        for name in names {
            self.delete(&name).await;
        }
    }
}

/// How reading an object went.
pub(crate) enum Fetch {
    Got(Vec<u8>),
    /// It cannot be read, now or later (it is not there).
    Failed(RemoteError),
    /// It could not be read now; it may be later.
    Retry(RemoteError),
}

/// How many objects the pool's object store holds, and their size in bytes; zeros when
/// it does not exist. Reads each object's description directly: creates nothing.
pub(crate) async fn stored(js: &jetstream::Context, queue: &QueueConfig) -> (u64, u64) {
    let Ok(stream) = js.get_stream(format!("OBJ_{}", queue.object_bucket())).await else { return (0, 0) };
    let Ok(mut subjects) = stream.info_with_subjects(format!("$O.{}.M.>", queue.object_bucket())).await else {
        return (0, 0);
    };
    let mut names = Vec::new();
    while let Some(Ok((subject, _))) = subjects.next().await {
        names.push(subject);
    }
    let (mut objects, mut bytes) = (0, 0);
    for subject in names {
        let Ok(msg) = stream.get_last_raw_message_by_subject(&subject).await else { continue };
        // A deletion marker (one whose removal failed) is no object.
        if let Ok(info) = serde_json::from_slice::<object_store::ObjectInfo>(&msg.payload)
            && !info.deleted
        {
            objects += 1;
            bytes += info.size as u64;
        }
    }
    (objects, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_say_whose_and_what_they_are() {
        assert_eq!(args_object("c1", 42), "c1-42-args");
        assert_eq!(result_object("c1", 42, 2, 7), "c1-42-d2-r7");
        // A client's objects all start with its id and a dash: what its close sweeps.
        assert!(result_object("c1", 1, 1, 0).starts_with("c1-"));
    }

    #[test]
    fn chunks_are_as_large_as_messages_allow() {
        assert_eq!(chunk_size(1 << 20), (1 << 20) - 4096);
        assert_eq!(chunk_size(1000), 500, "never over the limit");
        assert_eq!(chunk_size(1 << 30), 8 << 20);
        assert_eq!(chunk_size(0), 1 << 20);
    }
}
