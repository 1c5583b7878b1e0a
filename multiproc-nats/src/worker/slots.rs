//! The slot threads: each runs one task at a time on the runner, blocking, and reports
//! its outcome to the worker's loop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::progress::{ItemSet, Pending, missing};
use crate::envelope::{RemoteError, TaskHead, host_name};
use crate::runner::{Task, TaskRunner};

/// A task for a slot thread.
pub(super) struct Job {
    pub(super) key: u64,
    pub(super) head: TaskHead,
    pub(super) payload: Bytes,
    pub(super) args_at: usize,
    /// The items whose results are stored already (a redelivery's): they do not run.
    pub(super) stored: ItemSet,
    /// Where the outcomes go as they come, for the loop to send.
    pub(super) pending: Arc<Mutex<Pending>>,
}

/// What a slot says about a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotEvent {
    /// Its batch of results is full: send it now.
    Full,
    /// It ended, every outcome in its batch; with the pid of the process that ran it
    /// all, when one did.
    Done(Option<u32>),
}

/// The slot threads, fed through one queue.
pub(super) struct Slots {
    jobs: std::sync::mpsc::Sender<Job>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What the slots report: `(job key, event)`.
pub(super) type Finished = mpsc::UnboundedReceiver<(u64, SlotEvent)>;

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
                    let pid = run_job(&*runner, slot, &job, || {
                        let _ = tx.send((job.key, SlotEvent::Full));
                    });
                    if tx.send((job.key, SlotEvent::Done(pid))).is_err() {
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

/// Runs one job on `runner` in `slot`: the items it lacks (all but those `stored`
/// already), each outcome into the job's batch as it comes (`full()` when the batch
/// fills). A runner that panics, or never tells an item, must not leave its task held
/// (and kept alive by in-progress acks) forever: such items fail instead. Returns the
/// pid of the process that ran the task, when one did.
fn run_job(runner: &dyn TaskRunner, slot: usize, job: &Job, full: impl Fn()) -> Option<u32> {
    let task = Task {
        id: job.head.task_id,
        fingerprint: job.head.fingerprint,
        function: job.head.function,
        trampoline: job.head.trampoline,
        function_name: &job.head.function_name,
        items: job.head.items,
        chunk: job.head.chunk,
        args: &job.payload[job.args_at..],
        timeout: job.head.timeout_ms.map(Duration::from_millis),
        retries: job.head.retries,
    };
    let wanted = missing(task.items, &job.stored);
    let mut untold = vec![false; task.items as usize];
    for &k in &wanted {
        untold[k as usize] = true;
    }
    let mut sink = |k: u32, outcome: Result<&[u8], &RemoteError>| {
        if let Some(u) = untold.get_mut(k as usize)
            && *u
        {
            *u = false;
            if job.pending.lock().unwrap_or_else(|e| e.into_inner()).push(k, outcome, Instant::now) {
                full();
            }
        }
    };
    let ran =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run_items(slot, &task, &wanted, &mut sink)));
    let why = match ran {
        Ok(_) => "the worker's runner gave no outcome for this item",
        Err(_) => "the worker's task runner panicked",
    };
    // Made only when an item was left untold: the common case builds nothing.
    let mut untold = wanted.iter().copied().filter(|&k| untold[k as usize]).peekable();
    if untold.peek().is_some() {
        let error = RemoteError::Spawn { host: host_name(), worker_pid: std::process::id(), message: why.into() };
        let mut pending = job.pending.lock().unwrap_or_else(|e| e.into_inner());
        for k in untold {
            pending.push(k, Err(&error), Instant::now);
        }
    }
    ran.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{ItemResults, PROTOCOL};
    use crate::runner::{ItemSink, RunReport};

    /// Tells only the even items it is asked for, their number as the value.
    struct EvenOnly;

    impl TaskRunner for EvenOnly {
        fn slots(&self) -> usize {
            1
        }

        fn run(&self, _slot: usize, _task: &Task<'_>) -> RunReport {
            RunReport { results: ItemResults::new(), process_pid: None }
        }

        fn run_items(&self, _: usize, _: &Task<'_>, wanted: &[u32], done: &mut ItemSink<'_>) -> Option<u32> {
            for &k in wanted.iter().filter(|k| *k % 2 == 0) {
                done(k, Ok(&[k as u8]));
                done(k, Ok(&[99])); // told twice: the first counts
            }
            Some(7)
        }
    }

    fn job(items: u32, stored: ItemSet) -> Job {
        let head = TaskHead {
            version: PROTOCOL,
            task_id: 1,
            reply_to: "r".into(),
            fingerprint: 0,
            function: 0,
            trampoline: 0,
            function_name: "f".into(),
            timeout_ms: None,
            retries: 0,
            items,
            chunk: 1,
            args_object: None,
        };
        Job { key: 1, head, payload: Bytes::new(), args_at: 0, stored, pending: Arc::default() }
    }

    #[test]
    fn only_missing_items_run_and_an_item_never_told_fails() {
        let mut stored = ItemSet::default();
        stored.add(0, 2);
        let job = job(5, stored);
        let pid = run_job(&EvenOnly, 0, &job, || {});
        assert_eq!(pid, Some(7));
        let runs = job.pending.lock().unwrap().take();
        let told: Vec<(u32, Result<Vec<u8>, String>)> = runs
            .iter()
            .flat_map(|(first, r)| {
                (0..r.len())
                    .map(move |i| (first + i as u32, r.get(i).unwrap().map(<[u8]>::to_vec).map_err(|e| e.to_string())))
            })
            .collect();
        assert_eq!(told.len(), 3, "items 0 and 1 were stored already: {told:?}");
        assert_eq!(told[0], (2, Ok(vec![2])));
        assert!(
            told[1].0 == 3 && told[1].1.as_ref().is_err_and(|e| e.contains("no outcome for this item")),
            "{told:?}"
        );
        assert_eq!(told[2], (4, Ok(vec![4])));
    }
}
