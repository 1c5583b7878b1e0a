//! The slot threads: each runs one task at a time on the runner, blocking, and reports
//! its outcome to the worker's loop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::envelope::{RemoteError, TaskHead, host_name};
use crate::runner::{RunReport, Task, TaskRunner};

/// A task for a slot thread.
pub(super) struct Job {
    pub(super) key: u64,
    pub(super) head: TaskHead,
    pub(super) payload: Bytes,
    pub(super) args_at: usize,
}

/// The slot threads, fed through one queue.
pub(super) struct Slots {
    jobs: std::sync::mpsc::Sender<Job>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What the slots report: `(job key, report)`.
pub(super) type Finished = mpsc::UnboundedReceiver<(u64, RunReport)>;

impl Slots {
    /// Starts `count` slot threads running jobs on `runner`.
    pub(super) fn start(count: usize, runner: &Arc<dyn TaskRunner>) -> std::io::Result<(Slots, Finished)> {
        let (jobs, job_rx) = std::sync::mpsc::channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut threads = Vec::new();
        for slot in 0..count {
            let (rx, tx, runner) = (job_rx.clone(), done_tx.clone(), runner.clone());
            let name = format!("multiproc-nats-slot-{slot}");
            threads.push(std::thread::Builder::new().name(name).spawn(move || {
                loop {
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(job) = job else { break };
                    let report = run_job(&*runner, slot, &job);
                    if tx.send((job.key, report)).is_err() {
                        break;
                    }
                }
            })?);
        }
        Ok((Slots { jobs, threads }, done_rx))
    }

    /// Hands a job to the next free slot.
    pub(super) fn run(&self, job: Job) {
        let _ = self.jobs.send(job);
    }

    /// Lets the slots finish what they run, and waits for them.
    pub(super) fn join(self) {
        drop(self.jobs);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Runs one job on `runner` in `slot`. A runner that panics must not leave its task held
/// (and kept alive by in-progress acks) forever: the task fails instead.
fn run_job(runner: &dyn TaskRunner, slot: usize, job: &Job) -> RunReport {
    let task = Task {
        id: job.head.task_id,
        fingerprint: job.head.fingerprint,
        function: job.head.function,
        trampoline: job.head.trampoline,
        function_name: &job.head.function_name,
        items: job.head.items,
        chunk: job.head.chunk.max(1),
        args: &job.payload[job.args_at..],
        timeout: job.head.timeout_ms.map(Duration::from_millis),
        retries: job.head.retries,
    };
    let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run(slot, &task)))
        .unwrap_or_else(|_| failed(task.items, "the worker's task runner panicked".into()));
    checked(report, task.items)
}

/// The report, if it has one outcome per item; else every item fails.
fn checked(report: RunReport, items: u32) -> RunReport {
    if report.results.len() == items as usize {
        return report;
    }
    let why = format!("the worker's runner gave {} outcomes for {} items", report.results.len(), items);
    failed(items, why)
}

fn failed(items: u32, message: String) -> RunReport {
    let error = RemoteError::Spawn { host: host_name(), worker_pid: std::process::id(), message };
    RunReport::failed(items, &error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::ItemResults;

    #[test]
    fn a_report_short_of_items_fails_every_item() {
        let mut results = ItemResults::new();
        results.push(Ok(&[1][..]));
        let report = checked(RunReport { results, process_pid: Some(5) }, 2);
        assert_eq!(report.results.len(), 2);
        for k in 0..2 {
            match report.results.get(k) {
                Some(Err(RemoteError::Spawn { message, .. })) => assert!(message.contains("1 outcomes for 2 items")),
                other => panic!("{other:?}"),
            }
        }
        let mut results = ItemResults::new();
        results.push(Ok(&[1][..]));
        assert_eq!(checked(RunReport { results, process_pid: Some(5) }, 1).process_pid, Some(5));
    }
}
