//! The worker side: a child that runs tasks one after another, in the order it got them.
//!
//! Tasks run on the worker's main thread, FIFO, so when a worker dies its parent knows
//! the culprit: the item the shared counters say was started and not finished. Before
//! each task the driver sent, the worker claims it in the shared claim word; a task the
//! driver took back meanwhile (see `claim`) is skipped: read, its descriptors dropped,
//! no item started, no result. Results are batched: the worker sends them when it has
//! nothing more to read, when a batch grows large, or a short while after the last send;
//! and a batch never waits for the next task, which may run long: it goes to the outbox
//! first (see `outbox`).

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::claim::{self, Decision};
use super::outbox::{FLUSH_AFTER, Outbox};
use super::protocol::*;
use crate::bytes;
use crate::pool::item::{TAG_CODEC, TAG_OK, begin_item, end_item, for_each_item};
use crate::pool::last_words::{self, LastWords};
use crate::pool::task::TaskTime;
use crate::pool::trampoline::{InitTrampoline, Trampoline, forget_panic, install_panic_hook};
use crate::spawn::identity::SameBuild;
use crate::spawn::{self, ChildContext};
use crate::sys;
use crate::sys::mem::{Mapped, SharedCounters};
use crate::wire::frame::{Frame, FrameReader, FrameWriter, REPLY_SPIN, SpillMaps};
use crate::wire::{FrameError, codec, fds};

/// A batch of results this large is sent at once.
const FLUSH_BYTES: usize = 64 * 1024;

fn die(msg: &str) -> ! {
    last_words::say(&LastWords::Cause(msg.to_string()));
    eprintln!("multiproc pool worker {} ({}): {msg}", spawn::identity().name, sys::proc::getpid());
    sys::proc::exit_now(3)
}

/// The worker can no longer talk to its driver: a task closed or shut down its socket, or
/// the pool is gone. It says so (a driver that is still there names it as the cause of
/// the death) and exits.
fn lost_connection(doing: &str, e: &dyn std::fmt::Display) -> ! {
    last_words::say(&LastWords::Cause(format!(
        "the worker could not {doing} over its connection to the pool ({e}); a task may have closed or shut down that socket"
    )));
    sys::proc::exit_now(0)
}

fn exit_cleanly() -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(0)
}

/// How far a worker raises its OOM score adjustment above its program's (out of 1000):
/// the OOM killer takes a worker before its program unless the program holds half of the
/// memory more than that worker (see `sys::proc::raise_oom_score`).
const WORKER_OOM_SCORE: i32 = 500;

/// The worker's entry: setup, initializer, then tasks until told to stop or the parent goes.
pub(crate) fn worker_entry(ctx: ChildContext) {
    // Before any user code: Ctrl-C in a terminal reaches every process of its foreground
    // group, workers included; the program that owns the pool decides what it means
    // (Python's pebble and billiard do the same). A task may set it back.
    sys::proc::ignore_interrupt();
    // And a process group of its own, whatever the containment: a task's `kill(0, ..)`
    // (a shell script's `trap 'kill 0' EXIT`, say) signals its process group, which was
    // the program's: the program died of what a task ran. (Ctrl-C, ignored here anyway,
    // no longer reaches a worker or what its tasks start: the program decides.)
    let _ = sys::contain::own_process_group();
    // And first in line for the OOM killer, ahead of its program: a task that leaks until
    // memory runs out (the machine's, or a container's) should cost its own worker, not
    // the program, which would otherwise be picked whenever it holds more memory.
    sys::proc::raise_oom_score(WORKER_OOM_SCORE);
    let (mut reader, mut writer) = ctx.channel.split();
    let (setup, counters) = read_setup(&mut reader);
    install_panic_hook();
    prepare(&setup, &mut writer);
    // After the sandbox, so that its thread (started with the first batch handed over)
    // is confined as the tasks are: Landlock and seccomp bind the thread that enters them
    // and the threads it then starts.
    let outbox = Outbox::new(&writer);
    let mut runner = Runner {
        writer,
        outbox,
        setup,
        counters,
        spill_maps: SpillMaps::default(),
        tasks_done: 0,
        items: 0,
        last_flush: Instant::now(),
        ended: Instant::now(),
        after_express: false,
    };
    // When the last task ended: the flush timer reads it instead of the clock.
    runner.ended = runner.last_flush;
    loop {
        if runner.writer.pending() > 0 && !reader.has_frame() {
            runner.flush_idle();
        }
        // After an express task, the caller's next one usually follows its result within
        // microseconds: poll before sleeping (a pool fed by the driver has its window).
        if runner.after_express {
            reader.spin_fill(REPLY_SPIN, None);
        }
        reader.wait_readable();
        let frame = match reader.recv(None) {
            Ok(f) => f,
            // The pool is gone (nothing to report to), or a task closed the socket.
            Err(e) => lost_connection("read its next task", &e),
        };
        runner.on_frame(frame);
        runner.after_task();
    }
}

/// The pool's `SETUP` and the counter page it carries.
fn read_setup(reader: &mut FrameReader) -> (Setup, Arc<SharedCounters>) {
    let frame = reader.recv(None).unwrap_or_else(|e| die(&format!("no setup from the pool: {e}")));
    if frame.kind != KIND_SETUP {
        die(&format!("expected the pool's setup, got frame kind {:#04x}", frame.kind));
    }
    let mut fds = frame.fds;
    let setup: Setup = codec::decode(frame.payload).unwrap_or_else(|e| die(&e.to_string()));
    let fd = fds.pop().unwrap_or_else(|| die("the setup carried no counter page"));
    let counters = SharedCounters::open(fd, SLOTS).unwrap_or_else(|e| die(&format!("counter page: {e}")));
    let counters = Arc::new(counters);
    last_words::install(counters.clone());
    (setup, counters)
}

/// The address-space limit and the initializer, then `READY` (or `INIT_FAILED` and exit).
fn prepare(setup: &Setup, writer: &mut FrameWriter) {
    if let Some(limit) = setup.address_space
        && let Err(e) = sys::mem::limit_address_space(limit)
    {
        die(&format!("cannot set the address-space limit: {e}"));
    }
    if let Some((trampoline, function, arg)) = &setup.initializer {
        // The parent made this offset from an `InitTrampoline` monomorphised for the
        // initializer's function and argument.
        let init: InitTrampoline = SameBuild::parent().function_at(*trampoline);
        if let Err(message) = init(*function, arg) {
            let _ = writer.send(KIND_INIT_FAILED, &message);
            exit_cleanly();
        }
    }
    // After the initializer, before the first task.
    #[cfg(feature = "sandbox")]
    if let Err(e) = crate::isolation::sandbox::enter(last_words::prepare_cause, Some(last_words::say_prepared)) {
        die(&e);
    }
    if writer.send(KIND_READY, &()).is_err() {
        sys::proc::exit_now(0);
    }
}

/// The worker's state between tasks (its socket's reading half stays with the loop).
struct Runner {
    writer: FrameWriter,
    /// Where queued results go before each task, so a long task does not hold them.
    outbox: Arc<Outbox>,
    setup: Setup,
    counters: Arc<SharedCounters>,
    spill_maps: SpillMaps,
    tasks_done: u64,
    /// Items started so far (what the shared counters count).
    items: u64,
    last_flush: Instant,
    /// When the last task ended.
    ended: Instant,
    after_express: bool,
}

impl Runner {
    /// Nothing more to read: sends the results batched so far.
    fn flush_idle(&mut self) {
        if let Err(e) = self.outbox.flush_all(&mut self.writer) {
            lost_connection("send its results", &e);
        }
        self.writer.shrink_idle();
        self.last_flush = self.ended;
    }

    fn on_frame(&mut self, frame: Frame<'_>) {
        let mut frame_fds = frame.fds;
        // A large task's body, which its `Bytes` arguments share instead of copying.
        let mapped = (frame.kind == KIND_TASK_BIG).then(|| {
            self.spill_maps.open(frame.payload, &mut frame_fds).unwrap_or_else(|e| die(&format!("a large task: {e}")))
        });
        let p: &[u8] = match (frame.kind, &mapped) {
            (KIND_TASK, _) => frame.payload,
            (KIND_TASK_BIG, Some((m, len))) => &m.bytes()[..*len],
            (KIND_STOP, _) => {
                if let Err(e) = self.outbox.flush_all(&mut self.writer) {
                    lost_connection("send its results", &e);
                }
                exit_cleanly();
            }
            (other, _) => die(&format!("unexpected frame kind {other:#04x}")),
        };
        let Some((head, body)) = TaskHead::decode(p) else { die("a task frame too short for its header") };
        // Express tasks come from a caller, not the driver: nobody takes them back.
        if head.id < EXPRESS_IDS && claim::claim_next(self.counters.get(SLOT_CLAIM)) == Decision::Skip {
            // Taken back: its descriptors drop here, unused, and its body's memfd, which
            // the driver will not fill again, is no longer kept mapped.
            if let Some((m, _)) = &mapped {
                self.spill_maps.forget(m);
            }
            // Said, so that the driver can tell a skip it asked for from a claim word
            // something in this process overwrote (a task that never answered would
            // otherwise be waited for for ever).
            if self.writer.queue(KIND_SKIPPED, &head.id).is_err() {
                die("cannot queue a skip notice");
            }
            return;
        }
        self.run_task(&head, body, mapped.as_ref().map(|(m, _)| m), frame_fds);
    }

    /// Runs a task's items in order and queues its result (`mapped`: the spilled body
    /// its items lie in, if any).
    fn run_task(&mut self, head: &TaskHead, body: &[u8], mapped: Option<&Arc<Mapped>>, frame_fds: Vec<OwnedFd>) {
        let TaskHead { id, trampoline, function, count, limits } = *head;
        self.after_express = id >= EXPRESS_IDS;
        // What `multiproc::task` tells the task about its time, until it returns.
        let _time = TaskTime::begin(limits.soft, limits.hard);
        // The parent made `trampoline` from a `Trampoline` monomorphised for this task's
        // function, argument and result types.
        let run: Trampoline = SameBuild::parent().function_at(trampoline);
        // What is queued so far must not wait for this task, however long it runs.
        if let Err(e) = self.outbox.hand_over(&mut self.writer) {
            lost_connection("send its results", &e);
        }
        let holders = mapped.map_or(0, Arc::strong_count);
        let max_item = self.writer.max_frame() as usize;
        let t0 = Instant::now();
        let queued = self.writer.queue_spilling(KIND_RESULT, KIND_RESULT_BIG, SPILL_AT, |out| {
            let at = out.len();
            out.extend_from_slice(&[0; ResultHead::LEN]);
            bytes::sharing(mapped, || {
                fds::with_incoming(frame_fds, || {
                    run_items(&self.counters, &mut self.items, (run, function), (body, count, max_item), out)
                })
            });
            self.ended = Instant::now();
            let elapsed = self.ended.duration_since(t0).as_nanos() as u64;
            // Something still shares the body: the parent must not fill its memfd again.
            let kept_body = mapped.is_some_and(|m| Arc::strong_count(m) > holders);
            ResultHead { id, elapsed, count, flags: ResultFlags { kept_body } }.write_at(&mut out[at..]);
            Ok(())
        });
        if let Some(m) = mapped
            && Arc::strong_count(m) > holders
        {
            self.spill_maps.forget(m);
        }
        if let Err(e) = queued {
            self.queue_failed_result(id, count, &e);
        }
        self.tasks_done += 1;
    }

    /// The task's values cannot travel (over the frame limit, or no memfd for them):
    /// each of its items gets the reason instead, and the worker goes on.
    fn queue_failed_result(&mut self, id: u64, count: u32, e: &FrameError) {
        let message = format!("the task's result cannot be sent: {e}");
        let failed = self.writer.queue_spilling(KIND_RESULT, KIND_RESULT_BIG, SPILL_AT, |out| {
            let at = out.len();
            out.extend_from_slice(&[0; ResultHead::LEN]);
            ResultHead { id, elapsed: 0, count, flags: ResultFlags::default() }.write_at(&mut out[at..]);
            for _ in 0..count {
                let item = begin_item(out);
                out.push(TAG_CODEC);
                let _ = codec::encode_into(&message, out);
                end_item(out, item);
            }
            Ok(())
        });
        if let Err(e) = failed {
            die(&format!("{message}; nor can that error: {e}"));
        }
    }

    /// After a task: retires if the setup says so, sends the batch if it is due.
    fn after_task(&mut self) {
        let rss = || sys::proc::rss_bytes(sys::proc::getpid()).ok();
        if let Some(reason) = retirement(&self.setup, self.tasks_done, rss) {
            let _ = self.writer.queue(KIND_RETIRE, &reason);
            if let Err(e) = self.outbox.flush_all(&mut self.writer) {
                lost_connection("send its results", &e);
            }
            exit_cleanly();
        }
        if self.writer.pending() > FLUSH_BYTES || self.ended.duration_since(self.last_flush) > FLUSH_AFTER {
            if let Err(e) = self.outbox.flush_all(&mut self.writer) {
                lost_connection("send its results", &e);
            }
            self.last_flush = self.ended;
        }
    }
}

/// Runs `count` items of `body`, each appended to `out` as a tagged result item. The
/// shared counters say which item runs: a death between the two stores is that item's.
fn run_items(
    counters: &SharedCounters,
    items: &mut u64,
    (run, function): (Trampoline, i64),
    (body, count, max_item): (&[u8], u32, usize),
    out: &mut Vec<u8>,
) {
    let started = counters.get(SLOT_STARTED);
    let finished = counters.get(SLOT_FINISHED);
    let n = for_each_item(body, count, |_, arg| {
        let at = begin_item(out);
        out.push(TAG_OK);
        // Only this process writes the counters: a plain store publishes.
        *items += 1;
        forget_panic();
        started.store(*items, Ordering::Release);
        let tag = run(function, arg, out);
        finished.store(*items, Ordering::Release);
        out[at + 4] = tag;
        if out.len() - at > max_item {
            // This value alone cannot travel: it fails by itself, the others go on.
            let len = out.len() - at - 5;
            out.truncate(at + 4);
            out.push(TAG_CODEC);
            let message = format!(
                "the task's result cannot be sent: a value of {len} bytes is over the frame limit of {max_item} bytes"
            );
            let _ = codec::encode_into(&message, out);
        }
        end_item(out, at);
    });
    if n != count {
        die("a task frame with a cut item list");
    }
}

/// Whether a worker that has run `tasks_done` tasks retires now (`rss`: its resident
/// memory, asked only with a memory cap).
fn retirement(setup: &Setup, tasks_done: u64, rss: impl FnOnce() -> Option<u64>) -> Option<Retire> {
    if setup.max_tasks.is_some_and(|m| tasks_done >= m) {
        return Some(Retire::MaxTasks);
    }
    let limit = setup.max_memory?;
    match rss() {
        Some(rss) if rss > limit => Some(Retire::Memory { rss }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(max_tasks: Option<u64>, max_memory: Option<u64>) -> Setup {
        Setup { max_tasks, max_memory, address_space: None, initializer: None }
    }

    #[test]
    fn a_worker_retires_after_its_tasks_or_above_its_memory() {
        assert_eq!(retirement(&setup(None, None), 100, || panic!("not asked")), None);
        assert_eq!(retirement(&setup(Some(3), None), 2, || None), None);
        assert_eq!(retirement(&setup(Some(3), Some(1)), 3, || Some(5)), Some(Retire::MaxTasks));
        assert_eq!(retirement(&setup(None, Some(10)), 1, || Some(11)), Some(Retire::Memory { rss: 11 }));
        assert_eq!(retirement(&setup(None, Some(10)), 1, || Some(10)), None);
        assert_eq!(retirement(&setup(None, Some(10)), 1, || None), None);
    }
}
