//! What travels through the broker: a task (head, then its items' arguments) and its
//! results (head, then the outcomes of a run of its items). Heads are postcard, like every
//! frame of the core. A task's items are exactly what a local pool worker receives: each
//! a `u32` little-endian length and the encoded argument; a result's items are each a
//! `u32` length, a tag byte and the encoded value (or, after an error tag, a postcard
//! [`RemoteError`]).
//!
//! A task's items or one item's result too large for a message travel through the pool's
//! object store instead (see `objects.rs`): the message then carries only its head, which
//! names the object (`TaskHead::args_object`, `Outcome::InObject`), and the object holds
//! exactly the bytes the message would have carried after the head.

use std::fmt;
use std::time::Duration;

/// Room left in a message for its headers (the message id).
pub(crate) const HEADER_ROOM: usize = 64;

use serde::{Deserialize, Serialize};

/// Bumped whenever a message below changes shape (3: payloads through the object store).
pub(crate) const PROTOCOL: u16 = 3;

/// What opens every task message; its items' arguments follow it. `version`, `task_id`
/// and `reply_to` come first so that a worker can still answer a task whose remaining
/// fields it cannot read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskHead {
    pub(crate) version: u16,
    pub(crate) task_id: u64,
    /// The submitting client's own subject, where the result goes.
    pub(crate) reply_to: String,
    /// The build that made `function` and `trampoline`.
    pub(crate) fingerprint: u64,
    pub(crate) function: i64,
    pub(crate) trampoline: i64,
    pub(crate) function_name: String,
    /// Each task's time limit (a chunk of `chunk` items counts as one task), enforced by
    /// the worker: it kills the process running the task.
    pub(crate) timeout_ms: Option<u64>,
    /// How many times an item whose process died runs again.
    pub(crate) retries: u32,
    /// How many items follow.
    pub(crate) items: u32,
    /// Items per task, as a local pool would cut them (what a timeout and a death cost);
    /// 0: the worker's choice (see [`Task::chunk`](crate::Task::chunk)).
    pub(crate) chunk: u32,
    /// The object of the pool's object store holding the items, when they are too large
    /// for the message (which then carries none).
    pub(crate) args_object: Option<String>,
}

/// The part of a [`TaskHead`] every version shares.
#[derive(Debug, Deserialize)]
pub(crate) struct TaskAddress {
    pub(crate) version: u16,
    pub(crate) task_id: u64,
    pub(crate) reply_to: String,
}

impl TaskHead {
    pub(crate) fn encode(&self, args: &[u8]) -> Vec<u8> {
        let mut buf = postcard::to_stdvec(self).expect("a task head always encodes");
        buf.extend_from_slice(args);
        buf
    }

    /// The head and the items of a task message.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(TaskHead, &[u8]), postcard::Error> {
        postcard::take_from_bytes::<TaskHead>(bytes)
    }
}

/// Which worker ran a task: its host, the worker's pid, and the pid of the process the
/// task ran in (a child of the worker).
///
/// ```
/// use multiproc_nats::RanOn;
///
/// let ran_on = RanOn { host: "node-1".into(), worker_pid: 4242, process_pid: Some(4250) };
/// assert_eq!(ran_on.to_string(), "node-1:4242");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RanOn {
    /// The worker machine's host name.
    pub host: String,
    /// The worker process's pid.
    pub worker_pid: u32,
    /// The pid of the process that ran the task, when it got that far.
    pub process_pid: Option<u32>,
}

impl fmt::Display for RanOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.worker_pid)
    }
}

/// Why a task has no result. It travels from the worker to the client, so it carries
/// plain data: hosts, pids, messages.
///
/// ```
/// use multiproc_nats::RemoteError;
///
/// let e = RemoteError::Panicked {
///     message: "boom".into(),
///     location: Some("src/main.rs:3:5".into()),
///     backtrace: None,
/// };
/// assert_eq!(e.to_string(), "panicked at src/main.rs:3:5: boom");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The task panicked; the worker and its process survive.
    #[error("panicked{}: {message}", location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
    Panicked {
        /// The panic message.
        message: String,
        /// Where it panicked.
        location: Option<String>,
        /// A backtrace, when the worker runs with `RUST_BACKTRACE` set.
        backtrace: Option<String>,
    },
    /// The process running the task died (a signal, an abort, an exit inside the task).
    #[error(
        "died with {} in process {pid} of worker {host}:{worker_pid}{}",
        describe_exit(*exitcode),
        hint.as_ref().map(|h| format!(": {h}")).unwrap_or_default()
    )]
    WorkerDied {
        /// The worker's host.
        host: String,
        /// The worker's pid.
        worker_pid: u32,
        /// The pid of the process that died.
        pid: u32,
        /// Its exit code, `-N` for signal N (Python's convention).
        exitcode: i32,
        /// Every run of the item whose process died, oldest first, as (pid, exit code):
        /// more than one when the task had retries.
        attempts: Vec<(u32, i32)>,
        /// A likely explanation, when the worker has one (an address-space limit, say).
        hint: Option<String>,
    },
    /// The task ran past its timeout; its process was killed.
    #[error("timed out after {after:?}; process {pid} of worker {host}:{worker_pid} was killed")]
    Timeout {
        /// The worker's host.
        host: String,
        /// The worker's pid.
        worker_pid: u32,
        /// The killed process.
        pid: u32,
        /// The timeout.
        after: Duration,
    },
    /// A worker built from another binary refused the task without running it.
    #[error(
        "refused by worker {host}:{worker_pid}: it runs a different build (fingerprint {worker:016x}) than \
         this program ({client:016x}); start the workers from the very binary that submits"
    )]
    WrongBinary {
        /// The worker's host.
        host: String,
        /// The worker's pid.
        worker_pid: u32,
        /// The submitting program's fingerprint.
        client: u64,
        /// The worker's.
        worker: u64,
    },
    /// A worker that speaks another version of this crate's protocol refused the task.
    #[error("refused by worker {host}:{worker_pid}: it speaks cluster protocol {worker}, this program {client}")]
    Version {
        /// The worker's host.
        host: String,
        /// The worker's pid.
        worker_pid: u32,
        /// The submitting program's protocol.
        client: u16,
        /// The worker's.
        worker: u16,
    },
    /// The argument or the result did not (de)serialize.
    #[error("{message}")]
    Codec {
        /// What the codec said, naming the type.
        message: String,
    },
    /// The worker's local pool cannot run tasks any more (its initializer keeps failing).
    #[error("worker {host}:{worker_pid} cannot run it: {reason}")]
    PoolBroken {
        /// The worker's host.
        host: String,
        /// The worker's pid.
        worker_pid: u32,
        /// Why its pool gave up.
        reason: String,
    },
    /// The worker could not start a process to run the task.
    #[error("worker {host}:{worker_pid} could not start a process for it: {message}")]
    Spawn {
        /// The worker's host.
        host: String,
        /// The worker's pid.
        worker_pid: u32,
        /// Why.
        message: String,
    },
    /// Every worker that took the task vanished before finishing it, `deliveries` times:
    /// the broker stopped handing it out (the queue's `max_deliver`).
    #[error("lost: handed to a worker {deliveries} times, and each vanished before finishing it")]
    Lost {
        /// How many times it was handed out.
        deliveries: u64,
    },
    /// The task could not be handed to the broker.
    #[error("the broker did not take it: {message}")]
    Broker {
        /// Why.
        message: String,
    },
    /// The task's message is larger than the broker accepts even without its items (which
    /// travel through the pool's object store when they are too large): a broker whose
    /// `max_payload` is smaller than a task's head.
    #[error(
        "its message is {len} bytes, over the broker's limit of {max} bytes \
         (raise max_payload in the server's configuration)"
    )]
    TooLarge {
        /// The message's size.
        len: u64,
        /// The broker's `max_payload`.
        max: u64,
    },
    /// The client was closed before the result came back.
    #[error("the client was closed before its result came back")]
    Closed,
    /// An argument or a result too large for a broker message travels through the pool's
    /// object store, and that object could not be stored or read: named, with why (one
    /// not found was deleted, its task having settled, or outlived the result TTL).
    #[error("object `{object}` of the pool's object store (payloads over the broker's message limit): {message}")]
    Object {
        /// The object's name.
        object: String,
        /// What went wrong.
        message: String,
    },
    /// No outcome came within the client's result deadline
    /// ([`ClientConfig::result_deadline`](crate::ClientConfig::result_deadline)). The
    /// client stopped waiting and took the task off the queue if it was still there; a
    /// worker that already runs it finishes, unheard.
    #[error(
        "no outcome within the result deadline of {after:?}: no worker of this build took it in time, \
         or its worker or its result was lost (are workers of this very binary serving the pool?)"
    )]
    Deadline {
        /// The deadline, counted from submission.
        after: std::time::Duration,
    },
}

/// "exit code 3" or "signal 9 (SIGKILL)".
pub(crate) fn describe_exit(exitcode: i32) -> String {
    if exitcode < 0 {
        format!("signal {} ({})", -exitcode, multiproc::signal_name(-exitcode))
    } else {
        format!("exit code {exitcode}")
    }
}

/// What a result message holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The outcomes of items `first..first + count` follow (a task's results may take
    /// several messages, each within the broker's size limit).
    Items { first: u32, count: u32 },
    /// The whole task failed before any item ran (refused, unreadable).
    Failed(RemoteError),
    /// The outcomes of items `first..first + count` are in `object` of the pool's object
    /// store, too large for a message (the message carries none).
    InObject { first: u32, count: u32, object: String },
}

/// What opens every result message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ResultHead {
    pub(crate) version: u16,
    pub(crate) task_id: u64,
    pub(crate) ran_on: RanOn,
    /// Which delivery of the task this was (1 for the first).
    pub(crate) delivery: u64,
    pub(crate) outcome: Outcome,
}

impl ResultHead {
    /// The message: this head, then `items` (the encoded outcomes it announces).
    pub(crate) fn encode(&self, items: &[u8]) -> Vec<u8> {
        let mut buf = postcard::to_stdvec(self).expect("a result head always encodes");
        if matches!(self.outcome, Outcome::Items { .. }) {
            buf.extend_from_slice(items);
        }
        buf
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<(ResultHead, &[u8]), postcard::Error> {
        postcard::take_from_bytes::<ResultHead>(bytes)
    }
}

const TAG_VALUE: u8 = 0;
const TAG_ERROR: u8 = 1;

/// The outcomes of a task's items, in item order: each an encoded value or a
/// [`RemoteError`], kept in the form a result message carries them.
///
/// ```
/// use multiproc_nats::{ItemResults, RemoteError};
///
/// let boom = RemoteError::Panicked { message: "boom".into(), location: None, backtrace: None };
/// let mut results = ItemResults::new();
/// results.push(Ok(&[7]));
/// results.push(Err(&boom));
/// assert_eq!(results.len(), 2);
/// assert_eq!(results.get(0), Some(Ok(&[7][..])));
/// assert_eq!(results.get(1), Some(Err(boom)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemResults {
    bytes: Vec<u8>,
    /// Where each item's entry ends in `bytes`.
    ends: Vec<usize>,
}

impl ItemResults {
    /// No outcomes yet.
    ///
    /// ```
    /// use multiproc_nats::ItemResults;
    ///
    /// assert!(ItemResults::new().is_empty());
    /// ```
    pub fn new() -> ItemResults {
        ItemResults::default()
    }

    /// Appends the next item's outcome.
    ///
    /// ```
    /// use multiproc_nats::ItemResults;
    ///
    /// let mut r = ItemResults::new();
    /// r.push(Ok(b"encoded"));
    /// assert_eq!(r.len(), 1);
    /// ```
    pub fn push(&mut self, outcome: Result<&[u8], &RemoteError>) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        match outcome {
            Ok(value) => {
                self.bytes.push(TAG_VALUE);
                self.bytes.extend_from_slice(value);
            }
            Err(e) => {
                self.bytes.push(TAG_ERROR);
                postcard::to_io(e, &mut self.bytes).expect("an error always encodes into a vector");
            }
        }
        let len = (self.bytes.len() - at - 4) as u32;
        self.bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.ends.push(self.bytes.len());
    }

    /// How many outcomes.
    ///
    /// ```
    /// use multiproc_nats::ItemResults;
    ///
    /// let mut r = ItemResults::new();
    /// r.push(Ok(&[]));
    /// assert_eq!(r.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    ///
    /// ```
    /// use multiproc_nats::ItemResults;
    ///
    /// assert!(ItemResults::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Item `k`'s outcome.
    ///
    /// ```
    /// use multiproc_nats::ItemResults;
    ///
    /// let mut r = ItemResults::new();
    /// r.push(Ok(&[1, 2]));
    /// assert_eq!(r.get(0), Some(Ok(&[1, 2][..])));
    /// assert_eq!(r.get(1), None);
    /// ```
    pub fn get(&self, k: usize) -> Option<Result<&[u8], RemoteError>> {
        let end = *self.ends.get(k)?;
        let start = if k == 0 { 0 } else { self.ends[k - 1] };
        Some(decode_entry(&self.bytes[start + 4..end]))
    }

    /// The encoded entries of items `range`, as a result message carries them.
    pub(crate) fn entries(&self, range: std::ops::Range<usize>) -> &[u8] {
        let start = if range.start == 0 { 0 } else { self.ends[range.start - 1] };
        let end = if range.end == 0 { 0 } else { self.ends[range.end - 1] };
        &self.bytes[start..end]
    }

    /// The encoded size of item `k`'s entry.
    pub(crate) fn entry_len(&self, k: usize) -> usize {
        let start = if k == 0 { 0 } else { self.ends[k - 1] };
        self.ends[k] - start
    }

    /// Appends an entry as [`entries`](ItemResults::entries) gives it (its length, tag
    /// and bytes): an outcome moved from one list to another without decoding it.
    pub(crate) fn push_entry(&mut self, entry: &[u8]) {
        self.bytes.extend_from_slice(entry);
        self.ends.push(self.bytes.len());
    }
}

/// One entry (after its length): the tag, then a value or an error.
fn decode_entry(entry: &[u8]) -> Result<&[u8], RemoteError> {
    match entry.split_first() {
        Some((&TAG_VALUE, value)) => Ok(value),
        Some((&TAG_ERROR, e)) => Err(postcard::from_bytes(e)
            .unwrap_or_else(|e| RemoteError::Codec { message: format!("an unreadable error from the worker: {e}") })),
        _ => Err(RemoteError::Codec { message: "an unreadable item result from the worker".into() }),
    }
}

/// Splits `count` result entries: `each(k, outcome)` for each; returns how many were
/// well formed.
pub(crate) fn for_each_entry(
    mut body: &[u8],
    count: u32,
    mut each: impl FnMut(u32, Result<&[u8], RemoteError>),
) -> u32 {
    for k in 0..count {
        let Some(len) = body.get(..4).map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")) as usize) else {
            return k;
        };
        let Some(entry) = body.get(4..4 + len) else { return k };
        each(k, decode_entry(entry));
        body = &body[4 + len..];
    }
    count
}

/// Appends one item (a task's argument) in the pool's format: a `u32` length, the bytes.
pub(crate) fn push_item(buf: &mut Vec<u8>, arg: &[u8]) {
    buf.extend_from_slice(&(arg.len() as u32).to_le_bytes());
    buf.extend_from_slice(arg);
}

/// This machine's host name, read once: errors name it, and reading it for each would
/// cost a file's open, read and close.
pub(crate) fn host_name() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> TaskHead {
        TaskHead {
            version: PROTOCOL,
            task_id: 42,
            reply_to: "mproc.default.results.c1".into(),
            fingerprint: 0xfeed,
            function: -1234,
            trampoline: 5678,
            function_name: "app::work".into(),
            timeout_ms: Some(1500),
            retries: 1,
            items: 1,
            chunk: 1,
            args_object: None,
        }
    }

    #[test]
    fn a_task_round_trips_with_its_argument_bytes() {
        let bytes = head().encode(&[1, 2, 3]);
        let (h, arg) = TaskHead::decode(&bytes).unwrap();
        assert_eq!(h, head());
        assert_eq!(arg, [1, 2, 3]);
    }

    #[test]
    fn a_task_whose_arguments_are_in_an_object_round_trips_with_no_items() {
        let big = TaskHead { args_object: Some("c1-42-args".into()), items: 3, ..head() };
        let bytes = big.encode(&[]);
        let (h, rest) = TaskHead::decode(&bytes).unwrap();
        assert_eq!(h, big);
        assert!(rest.is_empty());
        // Its address reads as every version's does.
        let (addr, _) = postcard::take_from_bytes::<TaskAddress>(&bytes).unwrap();
        assert_eq!((addr.version, addr.task_id), (PROTOCOL, 42));
    }

    #[test]
    fn a_result_in_an_object_round_trips_and_carries_no_entries() {
        let ran_on = RanOn { host: "h".into(), worker_pid: 7, process_pid: Some(8) };
        let outcome = Outcome::InObject { first: 2, count: 1, object: "c1-42-d1-r2".into() };
        let head = ResultHead { version: PROTOCOL, task_id: 42, ran_on, delivery: 1, outcome };
        let bytes = head.encode(&[1, 2, 3]);
        let (h, rest) = ResultHead::decode(&bytes).unwrap();
        assert_eq!(h, head);
        assert!(rest.is_empty(), "the entries are in the object, not the message");
    }

    #[test]
    fn the_address_of_a_task_reads_even_when_the_rest_is_another_version() {
        let bytes = head().encode(&[]);
        let (addr, _) = postcard::take_from_bytes::<TaskAddress>(&bytes).unwrap();
        assert_eq!((addr.version, addr.task_id, addr.reply_to.as_str()), (PROTOCOL, 42, "mproc.default.results.c1"));
    }

    #[test]
    fn a_cut_task_is_an_error_not_a_panic() {
        let bytes = head().encode(&[9; 8]);
        for cut in 0..20 {
            let _ = TaskHead::decode(&bytes[..cut]);
        }
        assert!(TaskHead::decode(&bytes[..5]).is_err());
    }

    #[test]
    fn a_result_carries_item_entries_only_for_items() {
        let ran_on = RanOn { host: "h".into(), worker_pid: 7, process_pid: Some(8) };
        let mut items = ItemResults::new();
        items.push(Ok(&[4, 5]));
        items.push(Err(&RemoteError::Codec { message: "bad".into() }));
        items.push(Ok(&[]));
        let ok = ResultHead {
            version: PROTOCOL,
            task_id: 1,
            ran_on: ran_on.clone(),
            delivery: 1,
            outcome: Outcome::Items { first: 0, count: 3 },
        };
        let bytes = ok.encode(items.entries(0..3));
        let (h, rest) = ResultHead::decode(&bytes).unwrap();
        assert_eq!(h, ok);
        let mut seen = Vec::new();
        assert_eq!(for_each_entry(rest, 3, |k, r| seen.push((k, r.map(<[u8]>::to_vec)))), 3);
        assert_eq!(seen[0], (0, Ok(vec![4, 5])));
        assert_eq!(seen[1], (1, Err(RemoteError::Codec { message: "bad".into() })));
        assert_eq!(seen[2], (2, Ok(vec![])));
        assert_eq!(items.get(1), Some(Err(RemoteError::Codec { message: "bad".into() })));
        assert_eq!(items.entries(1..2).len(), items.entry_len(1));
        // A cut list stops at the last whole entry, without a panic.
        assert_eq!(for_each_entry(&rest[..rest.len() - 1], 3, |_, _| {}), 2);
        let failed = ResultHead { outcome: Outcome::Failed(RemoteError::Closed), ..ok };
        let bytes = failed.encode(items.entries(0..3));
        assert_eq!(ResultHead::decode(&bytes).unwrap().1, &[] as &[u8]);
    }

    #[test]
    fn errors_say_what_happened_and_where() {
        let e = RemoteError::WorkerDied {
            host: "node1".into(),
            worker_pid: 10,
            pid: 11,
            exitcode: -11,
            attempts: vec![(11, -11)],
            hint: None,
        };
        assert_eq!(e.to_string(), "died with signal 11 (SIGSEGV) in process 11 of worker node1:10");
        // What the worker's process said before it died (a sandbox rule, say) is part of it.
        let e = RemoteError::WorkerDied {
            host: "node1".into(),
            worker_pid: 10,
            pid: 11,
            exitcode: -31,
            attempts: vec![(11, -31)],
            hint: Some("sandbox: `execve` denied (no exec)".into()),
        };
        assert_eq!(
            e.to_string(),
            "died with signal 31 (SIGSYS) in process 11 of worker node1:10: sandbox: `execve` denied (no exec)"
        );
        let e = RemoteError::WrongBinary { host: "node1".into(), worker_pid: 10, client: 1, worker: 2 };
        assert!(e.to_string().contains("different build"), "{e}");
        let e = RemoteError::Deadline { after: Duration::from_millis(1500) };
        assert!(e.to_string().starts_with("no outcome within the result deadline of 1.5s"), "{e}");
    }
}
