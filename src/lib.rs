//! multiproc: Python's `multiprocessing`, for Rust.
#![deny(missing_docs)]

mod error;
mod pool;
mod process;
mod spawn;
mod sys;
pub mod wire;

pub use error::Error;
pub use pool::{
    AsyncResult, Attempt, Chunksize, IMapIter, MapOptions, MapResult, Pool, PoolBuilder, PoolError, PoolStats, StarFn,
    TaskError, TaskOptions,
};
pub use process::{Process, ProcessInfo, active_children, cpu_count, current_process, parent_process};
pub use spawn::{init, set_executable};
