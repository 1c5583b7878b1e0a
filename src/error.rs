//! Errors of setting up and managing processes (a task's own failure is a `TaskError`).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::wire::{CodecError, FrameError};

/// Why starting, talking to or managing a process failed.
///
/// Every variant says which process and what to do about it; none loses the child: a
/// child that failed its start is killed and reaped before the error is returned.
///
/// ```
/// use multiproc::{Error, Process};
///
/// fn quick(_: ()) {}
///
/// multiproc::init();
/// let mut p = Process::new(quick, ());
/// p.start()?;
/// p.join()?;
/// p.close()?;
/// // A closed handle refuses another start with a named state error.
/// match p.start() {
///     Err(Error::State(why)) => println!("refused: {why}"),
///     other => panic!("expected a state error, got {other:?}"),
/// }
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`init()`](crate::init) was not called, so a child could not become a worker.
    #[error(
        "multiproc::init() was not called: make it the first line of main \
         (in an integration test file, put multiproc::test_init!() at its top)"
    )]
    InitNotCalled,
    /// The child's containment or limits could not be set up (see [`Contain`](crate::Contain)
    /// and [`Limits`](crate::Limits)); the message says which and why.
    #[error("isolation: {0}")]
    Isolation(String),
    /// The executable could not be started at all.
    #[error("cannot start `{}`: {source}", executable.display())]
    Spawn {
        /// The executable that was run.
        executable: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The child runs a different build of the program, so function offsets would be meaningless.
    #[error(
        "child process {pid} runs a different build of `{}` (fingerprint {found:016x}, this program is \
         {expected:016x}); it was refused before running anything — rebuild, or run the same binary",
        executable.display()
    )]
    WrongBinary {
        /// The refused child.
        pid: u32,
        /// The executable it ran.
        executable: PathBuf,
        /// This program's fingerprint.
        expected: u64,
        /// The child's fingerprint.
        found: u64,
    },
    /// The child speaks another version of the wire protocol.
    #[error("child process {pid} speaks protocol version {found}, this program speaks {expected}")]
    Version {
        /// The refused child.
        pid: u32,
        /// This program's version.
        expected: u16,
        /// The child's version.
        found: u16,
    },
    /// The child ended before completing its handshake.
    #[error(
        "child process {pid} (`{}`) exited with {} before its handshake; does its main call multiproc::init() first?",
        executable.display(), describe_exit(*exitcode)
    )]
    DiedDuringStart {
        /// The child.
        pid: u32,
        /// The executable it ran.
        executable: PathBuf,
        /// Its exit code in Python's convention (`-N` for signal N).
        exitcode: i32,
    },
    /// The child did not answer its handshake in time; it was killed.
    #[error(
        "child process {pid} (`{}`) did not complete its handshake within {timeout:?} and was killed; \
         does its main call multiproc::init() first?",
        executable.display()
    )]
    StartTimeout {
        /// The child.
        pid: u32,
        /// The executable it ran.
        executable: PathBuf,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// The peer sent something the protocol does not allow; the connection was dropped.
    #[error("process {pid} broke the protocol: {source}")]
    Protocol {
        /// The peer.
        pid: u32,
        /// What was wrong with its frames.
        source: FrameError,
    },
    /// What is to be sent encodes to more bytes than the maximum frame size.
    #[error(
        "the message encodes to {len} bytes, which exceeds the maximum frame size of {max} bytes \
         (raise it with max_frame_size)"
    )]
    TooLarge {
        /// Encoded size.
        len: u64,
        /// The limit in force.
        max: u32,
    },
    /// A value could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The call does not fit the object's state, e.g. joining a process never started.
    #[error("{0}")]
    State(&'static str),
    /// A system call failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// "exit code 3" or "signal 9 (SIGKILL)" for an exit code in Python's convention.
pub(crate) fn describe_exit(exitcode: i32) -> String {
    if exitcode < 0 {
        format!("signal {} ({})", -exitcode, crate::sys::proc::signal_name(-exitcode))
    } else {
        format!("exit code {exitcode}")
    }
}
