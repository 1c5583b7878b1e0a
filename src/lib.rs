//! multiproc: Python's `multiprocessing`, for Rust.
#![deny(missing_docs)]

mod error;
mod fd;
mod pipe;
mod process;
mod queue;
mod shared;
mod spawn;
mod sync;
mod sys;
pub mod wire;

pub use error::Error;
pub use fd::Fd;
pub use pipe::{Connection, Pipe, PipeError, Ready, wait};
pub use process::{Process, ProcessInfo, active_children, cpu_count, current_process, parent_process};
pub use queue::{JoinableQueue, Queue, QueueError, SimpleQueue};
pub use shared::{Array, ArrayGuard, RawArray, RawValue, SharedMemory, Value, ValueGuard};
pub use spawn::{init, set_executable};
pub use sync::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, Event, Lock, LockError, LockGuard, RLock, RLockGuard,
    Semaphore, SyncError,
};
pub use sys::shm::Pod;
