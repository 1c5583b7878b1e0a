//! Resource limits of this process: rlimits, niceness, CPU affinity.

use std::io;

use rustix::process::{Resource, Rlimit, setrlimit};

/// Which rlimit to set.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// `RLIMIT_CPU`, in seconds.
    CpuSeconds,
    /// `RLIMIT_NOFILE`.
    OpenFiles,
    /// `RLIMIT_FSIZE`, in bytes.
    FileSize,
    /// `RLIMIT_NPROC` (counted per user, not per process).
    Processes,
}

/// Sets `limit` to `soft`, with a hard limit of `hard`.
pub(crate) fn set(limit: Limit, soft: u64, hard: u64) -> io::Result<()> {
    let resource = match limit {
        Limit::CpuSeconds => Resource::Cpu,
        Limit::OpenFiles => Resource::Nofile,
        Limit::FileSize => Resource::Fsize,
        Limit::Processes => Resource::Nproc,
    };
    setrlimit(resource, Rlimit { current: Some(soft), maximum: Some(hard) })?;
    Ok(())
}

/// Sets this process's niceness (raising it needs no privilege; lowering it does).
pub(crate) fn set_nice(nice: i32) -> io::Result<()> {
    rustix::process::setpriority_process(None, nice)?;
    Ok(())
}

/// Pins this process to the CPUs numbered in `cpus`.
pub(crate) fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    for &c in cpus {
        if c >= rustix::thread::CpuSet::MAX_CPU {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("CPU {c} is out of range")));
        }
        set.set(c);
    }
    rustix::thread::sched_setaffinity(None, &set)?;
    Ok(())
}
