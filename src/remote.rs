//! What a backend that runs tasks on other machines (the `multiproc-nats` crate) needs
//! from the core: the build fingerprint, a task's *code* (its function and a
//! monomorphised trampoline, as offsets), a `Pool` whose work goes to that backend
//! ([`pool_with`], [`Dispatch`]), and two ways to run such tasks on a worker machine: on
//! a local `Pool` ([`run_on_pool`]) or in a bare child process ([`TaskChild`]).
//!
//! Hidden from the documentation: this is an interface between multiproc's own crates,
//! with no stability promise to users.
//!
//! A task travels as two offsets (see `spawn::identity`): the user's function and the
//! *pool's* trampoline `fn(function, argument bytes, out) -> tag` made for its exact
//! types — the very one a local pool worker runs, so a task means the same everywhere.
//! Offsets mean something only in the very build that made them, so every entry point
//! that interprets them first compares the task's fingerprint with this program's.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::pool::Delivered;
pub use crate::pool::backend::{Batch, Dispatch, ItemDone, PoolTask, dispatch_of, pool_with, run_on_pool};

use crate::error::describe_exit;
use crate::pool::{ItemTrampoline, PanicReport, TAG_CODEC, TAG_OK, TAG_PANIC};
use crate::spawn::{self, ChildContext, ChildProcess, ChildSpec, identity};
use crate::wire::frame::Channel;
use crate::wire::{CodecError, FrameError, codec};
use crate::{Error, sys};

/// This executable's build fingerprint, as the process handshake compares it.
pub fn fingerprint() -> u64 {
    identity::fingerprint()
}

/// How a task's function is named across processes of one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCode {
    /// Offset of the user's function (0 for a fn item or non-capturing closure).
    pub function: i64,
    /// Offset of the trampoline made for the function's exact type.
    pub trampoline: i64,
    /// The function's type name, for messages.
    pub function_name: &'static str,
}

/// The code of task `f`, ready to travel.
///
/// Panics, like `Process::new`, if `f` is a closure that captures its environment.
pub fn task_code<F, A, R>(f: F) -> TaskCode
where
    F: Fn(A) -> R + Copy + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    TaskCode {
        function: identity::encode_fn::<F, fn(A) -> R>(f),
        trampoline: crate::pool::unary_trampoline_offset::<F, A, R>(),
        function_name: std::any::type_name::<F>(),
    }
}

/// Appends the encoding of a task's argument (or result) to `buf`.
pub fn encode_value<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    codec::encode_into(value, buf)
}

/// Decodes a task's result (or argument) from `bytes`.
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    codec::decode(bytes)
}

/// One task to run: its build, its code and its encoded argument.
#[derive(Debug, Clone, Copy)]
pub struct RemoteTask<'a> {
    /// The fingerprint of the build that made `function` and `trampoline`.
    pub fingerprint: u64,
    /// Offset of the user's function.
    pub function: i64,
    /// Offset of the trampoline.
    pub trampoline: i64,
    /// The function's name, for messages.
    pub function_name: &'a str,
    /// The encoded argument.
    pub arg: &'a [u8],
}

/// Why a task run by a [`TaskChild`] produced no result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The task was made by another build; nothing was run.
    #[error(
        "task `{function}` comes from a different build (fingerprint {task:016x}) than this program \
         ({this:016x}); it was not run — start workers from the very binary that submits"
    )]
    WrongBinary {
        /// The task's function name.
        function: String,
        /// The task's fingerprint.
        task: u64,
        /// This program's.
        this: u64,
    },
    /// The task panicked; the child survives.
    #[error("task `{function}` panicked{}: {message}", location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
    Panicked {
        /// The task's function name.
        function: String,
        /// The panic message.
        message: String,
        /// Where it panicked.
        location: Option<String>,
        /// The backtrace, when `RUST_BACKTRACE` asked for one.
        backtrace: Option<String>,
    },
    /// The argument or the result did not (de)serialize.
    #[error("task `{function}`: {message}")]
    Codec {
        /// The task's function name.
        function: String,
        /// What the codec said, naming the type.
        message: String,
    },
    /// The child died while running the task (a crash, a signal, an exit inside the task).
    #[error("task `{function}` died with {} in process {pid}", describe_exit(*exitcode))]
    Died {
        /// The task's function name.
        function: String,
        /// The child's pid.
        pid: u32,
        /// Its exit code, `-N` for signal N.
        exitcode: i32,
    },
    /// The task ran past its timeout; the child was killed.
    #[error("task `{function}` timed out after {after:?}; process {pid} was killed")]
    Timeout {
        /// The task's function name.
        function: String,
        /// The killed child's pid.
        pid: u32,
        /// The timeout.
        after: Duration,
    },
    /// The child broke the protocol; it was killed.
    #[error("task `{function}`: process {pid} broke the protocol: {source}")]
    Protocol {
        /// The task's function name.
        function: String,
        /// The child's pid.
        pid: u32,
        /// What was wrong.
        source: FrameError,
    },
    /// The child is gone (it died running an earlier task); start another.
    #[error("process {pid} has already ended; start a new one")]
    Ended {
        /// Its pid.
        pid: u32,
    },
}

/// Frame kind: parent → child, a task to run.
const KIND_RUN: u8 = crate::wire::kinds::TASK_CHILD_RUN;
/// Frame kind: child → parent, how it went.
const KIND_DONE: u8 = crate::wire::kinds::TASK_CHILD_DONE;

/// What precedes the argument bytes in a `KIND_RUN` frame.
#[derive(Debug, Serialize, Deserialize)]
struct RunHead {
    function: i64,
    trampoline: i64,
}

static NEXT_CHILD: AtomicU32 = AtomicU32::new(1);

/// A child process that runs tasks one after another, for a worker that serves tasks
/// coming from elsewhere. A task that crashes it costs that task; start another child.
/// Dropping it kills and reaps the child.
#[derive(Debug)]
pub struct TaskChild {
    process: ChildProcess,
    channel: Channel,
    ended: bool,
}

impl TaskChild {
    /// Starts a child named `name`; fails as `Process::start` does.
    pub fn start(name: &str) -> Result<TaskChild, Error> {
        let n = NEXT_CHILD.fetch_add(1, Ordering::Relaxed);
        let mut identity = spawn::identity().identity.clone();
        identity.push(n);
        let spec = ChildSpec {
            name: name.to_string(),
            identity,
            daemon: false,
            executable: None,
            start_timeout: spawn::DEFAULT_START_TIMEOUT,
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
            isolation: crate::isolation::Policy::default(),
            huge_pages: false,
        };
        let spawned = spawn::start(task_child_entry, "multiproc::remote::task_child_entry", &spec, |_| Ok(()))?;
        Ok(TaskChild { process: spawned.process, channel: spawned.channel, ended: false })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether the child can run another task.
    pub fn is_usable(&self) -> bool {
        !self.ended
    }

    /// Runs `task` and returns its encoded result. With a `timeout`, the child is killed
    /// when it passes. After `Died`, `Timeout` or `Protocol`, this child is finished.
    pub fn run(&mut self, task: &RemoteTask<'_>, timeout: Option<Duration>) -> Result<Vec<u8>, RunError> {
        let function = || task.function_name.to_string();
        let pid = self.pid();
        if self.ended {
            return Err(RunError::Ended { pid });
        }
        let this = fingerprint();
        if task.fingerprint != this {
            return Err(RunError::WrongBinary { function: function(), task: task.fingerprint, this });
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let head = RunHead { function: task.function, trampoline: task.trampoline };
        let sent = self
            .channel
            .writer
            .queue_with(KIND_RUN, |buf| {
                codec::encode_into(&head, buf)?;
                buf.extend_from_slice(task.arg);
                Ok(())
            })
            .and_then(|()| self.channel.writer.flush(deadline));
        let reply = match sent {
            Ok(()) => self.channel.reader.recv(deadline).and_then(|frame| {
                if frame.kind != KIND_DONE {
                    return Err(FrameError::Malformed(format!("expected a task result, got kind {:#04x}", frame.kind)));
                }
                // The pool trampoline's tag, then what it wrote.
                let (&tag, rest) =
                    frame.payload.split_first().ok_or_else(|| FrameError::Malformed("an empty task result".into()))?;
                Ok((tag, rest.to_vec()))
            }),
            Err(e) => Err(e),
        };
        match reply {
            Ok((TAG_OK, bytes)) => Ok(bytes),
            Ok((TAG_PANIC, bytes)) => Err(match codec::decode::<PanicReport>(&bytes) {
                Ok(p) => RunError::Panicked {
                    function: function(),
                    message: p.message,
                    location: Some(p.location).filter(|l| l != "<unknown>"),
                    backtrace: p.backtrace,
                },
                Err(e) => RunError::Codec { function: function(), message: e.to_string() },
            }),
            Ok((_, bytes)) => Err(RunError::Codec {
                function: function(),
                message: codec::decode::<String>(&bytes).unwrap_or_else(|e| e.to_string()),
            }),
            Err(e) => {
                self.ended = true;
                Err(self.failure(function(), e, timeout))
            }
        }
    }

    /// Why the child stopped answering, after making sure it is gone.
    fn failure(&self, function: String, e: FrameError, timeout: Option<Duration>) -> RunError {
        let pid = self.pid();
        match e {
            FrameError::TimedOut => {
                let _ = self.process.kill_and_reap();
                RunError::Timeout { function, pid, after: timeout.unwrap_or_default() }
            }
            FrameError::Closed | FrameError::Truncated { .. } | FrameError::Io(_) => {
                // The socket closed: the child is exiting or has exited; its code says how.
                let exitcode = match self.process.wait_timeout(Some(Duration::from_secs(5))) {
                    Ok(Some(code)) => code,
                    _ => self.process.kill_and_reap().unwrap_or(-libc::SIGKILL),
                };
                RunError::Died { function, pid, exitcode }
            }
            source => {
                let _ = self.process.kill_and_reap();
                RunError::Protocol { function, pid, source }
            }
        }
    }
}

impl Drop for TaskChild {
    fn drop(&mut self) {
        let _ = self.process.kill_and_reap();
    }
}

/// The child side: run tasks until the parent closes the socket.
fn task_child_entry(ctx: ChildContext) {
    let ChildContext { mut channel, .. } = ctx;
    crate::pool::install_panic_hook();
    let mut out = Vec::new();
    loop {
        let frame = match channel.reader.recv(None) {
            Ok(frame) => frame,
            Err(FrameError::Closed) => sys::proc::exit_now(0),
            Err(e) => {
                eprintln!("multiproc task process {}: {e}", sys::proc::getpid());
                sys::proc::exit_now(2)
            }
        };
        if frame.kind != KIND_RUN {
            eprintln!("multiproc task process {}: unexpected frame kind {:#04x}", sys::proc::getpid(), frame.kind);
            sys::proc::exit_now(2)
        }
        let (head, arg) = match codec::decode_prefix::<RunHead>(frame.payload) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("multiproc task process {}: {e}", sys::proc::getpid());
                sys::proc::exit_now(2)
            }
        };
        // The parent sends only tasks of this build (it compared fingerprints in
        // `TaskChild::run`), and `head.trampoline` was made by `offset_of` from the
        // pool's `Trampoline` in `task_code`.
        let tramp: ItemTrampoline = identity::SameBuild::parent().function_at(head.trampoline);
        out.clear();
        out.push(TAG_OK);
        // The trampoline catches panics (of the task and of its result's encoding).
        let tag = tramp(head.function, arg, &mut out);
        out[0] = tag;
        let mut queued = channel.writer.queue_bytes(KIND_DONE, &out);
        if let Err(FrameError::Oversized { len, max }) = queued {
            let message = format!("the result encodes to {len} bytes, over the frame limit of {max}");
            let mut small = vec![TAG_CODEC];
            let _ = codec::encode_into(&message, &mut small);
            queued = channel.writer.queue_bytes(KIND_DONE, &small);
        }
        if let Err(e) = queued.and_then(|()| channel.writer.flush(None)) {
            eprintln!("multiproc task process {}: cannot send the result: {e}", sys::proc::getpid());
            sys::proc::exit_now(2)
        }
        if out.capacity() > 4 << 20 {
            out = Vec::new();
        }
    }
}
