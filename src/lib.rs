//! multiproc: Python's `multiprocessing`, for Rust.
#![deny(missing_docs)]

mod error;
pub mod manager;
mod process;
mod spawn;
mod sys;
pub mod wire;

pub use error::Error;
pub use manager::{Manager, ManagerError};
pub use process::{Process, ProcessInfo, active_children, cpu_count, current_process, parent_process};
pub use spawn::{init, set_executable};
