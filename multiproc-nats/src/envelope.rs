//! What travels through the broker: a task (head, then the argument's bytes) and its
//! result (head, then the result's bytes). Heads are postcard, like every frame of the
//! core; the bytes that follow them are the task's own encoded argument or result.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bumped whenever a message below changes shape.
pub(crate) const PROTOCOL: u16 = 1;

/// What opens every task message; the argument's bytes follow it. `version`, `task_id`
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
    /// The task's own time limit, enforced by the worker (it kills the task's process).
    pub(crate) timeout_ms: Option<u64>,
}

/// The part of a [`TaskHead`] every version shares.
#[derive(Debug, Deserialize)]
pub(crate) struct TaskAddress {
    pub(crate) version: u16,
    pub(crate) task_id: u64,
    pub(crate) reply_to: String,
}

impl TaskHead {
    pub(crate) fn encode(&self, arg: &[u8]) -> Vec<u8> {
        let mut buf = postcard::to_stdvec(self).expect("a task head always encodes");
        buf.extend_from_slice(arg);
        buf
    }

    /// The head and the argument bytes of a task message.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(TaskHead, &[u8]), postcard::Error> {
        postcard::take_from_bytes::<TaskHead>(bytes)
    }
}

/// Which worker ran a task: its host, the worker's pid, and the pid of the process the
/// task ran in (a child of the worker).
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
    #[error("died with {} in process {pid} of worker {host}:{worker_pid}", describe_exit(*exitcode))]
    WorkerDied {
        /// The worker's host.
        host: String,
        /// The worker's pid.
        worker_pid: u32,
        /// The pid of the process that died.
        pid: u32,
        /// Its exit code, `-N` for signal N (Python's convention).
        exitcode: i32,
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
    /// The task's message is larger than the broker accepts.
    #[error(
        "its message is {len} bytes, over the broker's limit of {max} bytes \
         (raise max_payload in the server's configuration, or send a reference to the data)"
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
}

/// "exit code 3" or "signal 9 (SIGKILL)".
pub(crate) fn describe_exit(exitcode: i32) -> String {
    if exitcode < 0 {
        format!("signal {} ({})", -exitcode, multiproc::signal_name(-exitcode))
    } else {
        format!("exit code {exitcode}")
    }
}

/// How a task ended, as the result message says; a returned value's bytes follow the head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Outcome {
    Returned,
    Failed(RemoteError),
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
    pub(crate) fn encode(&self, value: &[u8]) -> Vec<u8> {
        let mut buf = postcard::to_stdvec(self).expect("a result head always encodes");
        if self.outcome == Outcome::Returned {
            buf.extend_from_slice(value);
        }
        buf
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<(ResultHead, &[u8]), postcard::Error> {
        postcard::take_from_bytes::<ResultHead>(bytes)
    }
}

/// This machine's host name.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
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
    fn a_result_carries_its_bytes_only_when_returned() {
        let ran_on = RanOn { host: "h".into(), worker_pid: 7, process_pid: Some(8) };
        let ok = ResultHead {
            version: PROTOCOL,
            task_id: 1,
            ran_on: ran_on.clone(),
            delivery: 1,
            outcome: Outcome::Returned,
        };
        let bytes = ok.encode(&[4, 5]);
        let (h, rest) = ResultHead::decode(&bytes).unwrap();
        assert_eq!((h, rest), (ok, &[4u8, 5][..]));
        let failed =
            ResultHead { outcome: Outcome::Failed(RemoteError::Closed), ..ResultHead::decode(&bytes).unwrap().0 };
        let bytes = failed.encode(&[4, 5]);
        assert_eq!(ResultHead::decode(&bytes).unwrap().1, &[] as &[u8]);
    }

    #[test]
    fn errors_say_what_happened_and_where() {
        let e = RemoteError::WorkerDied { host: "node1".into(), worker_pid: 10, pid: 11, exitcode: -11 };
        assert_eq!(e.to_string(), "died with signal 11 (SIGSEGV) in process 11 of worker node1:10");
        let e = RemoteError::WrongBinary { host: "node1".into(), worker_pid: 10, client: 1, worker: 2 };
        assert!(e.to_string().contains("different build"), "{e}");
    }
}
