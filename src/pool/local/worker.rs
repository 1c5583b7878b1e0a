//! The worker side: a child that runs tasks one after another, in the order it got them.
//!
//! Tasks run on the worker's main thread, FIFO, so when a worker dies its parent knows
//! the culprit: the item the shared counters say was started and not finished. Results
//! are batched: the worker sends them when it has nothing more to read, when a batch
//! grows large, or a short while after the last send.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::protocol::*;
use crate::bytes;
use crate::pool::item::{TAG_OK, begin_item, end_item, for_each_item};
use crate::pool::trampoline::{InitTrampoline, Trampoline, install_panic_hook};
use crate::spawn::identity::SameBuild;
use crate::spawn::{self, ChildContext};
use crate::sys;
use crate::sys::mem::SharedCounters;
use crate::wire::frame::{REPLY_SPIN, SpillMaps};
use crate::wire::{codec, fds};

/// Results wait at most this long in the worker before being sent.
const FLUSH_AFTER: Duration = Duration::from_micros(200);
/// A batch of results this large is sent at once.
const FLUSH_BYTES: usize = 64 * 1024;

fn die(msg: &str) -> ! {
    eprintln!("multiproc pool worker {} ({}): {msg}", spawn::identity().name, sys::proc::getpid());
    sys::proc::exit_now(3)
}

fn exit_cleanly() -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(0)
}

/// The worker's entry: setup, initializer, then tasks until told to stop or the parent goes.
pub(crate) fn worker_entry(ctx: ChildContext) {
    let (mut reader, mut writer) = ctx.channel.split();
    let (setup, counters) = {
        let frame = reader.recv(None).unwrap_or_else(|e| die(&format!("no setup from the pool: {e}")));
        if frame.kind != KIND_SETUP {
            die(&format!("expected the pool's setup, got frame kind {:#04x}", frame.kind));
        }
        let mut fds = frame.fds;
        let setup: Setup = codec::decode(frame.payload).unwrap_or_else(|e| die(&e.to_string()));
        let fd = fds.pop().unwrap_or_else(|| die("the setup carried no counter page"));
        let counters = SharedCounters::open(fd, SLOTS).unwrap_or_else(|e| die(&format!("counter page: {e}")));
        (setup, counters)
    };
    install_panic_hook();
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
    if writer.send(KIND_READY, &()).is_err() {
        sys::proc::exit_now(0);
    }

    let mut spill_maps = SpillMaps::default();
    let mut tasks_done: u64 = 0;
    let mut items: u64 = 0;
    let mut last_flush = Instant::now();
    // When the last task ended: the flush timer reads it instead of the clock.
    let mut ended = last_flush;
    let started = counters.get(SLOT_STARTED);
    let finished = counters.get(SLOT_FINISHED);
    let mut after_express = false;
    loop {
        if writer.pending() > 0 && !reader.has_frame() {
            if writer.flush(None).is_err() {
                sys::proc::exit_now(0);
            }
            writer.shrink_idle();
            last_flush = ended;
        }
        // After an express task, the caller's next one usually follows its result within
        // microseconds: poll before sleeping (a pool fed by the driver has its window).
        if after_express {
            reader.spin_fill(REPLY_SPIN, None);
        }
        let frame = match reader.recv(None) {
            Ok(f) => f,
            // The pool is gone: nothing to report to.
            Err(_) => sys::proc::exit_now(0),
        };
        let mut frame_fds = frame.fds;
        // A large task's body, which its `Bytes` arguments share instead of copying.
        let mapped = (frame.kind == KIND_TASK_BIG).then(|| {
            spill_maps.open(frame.payload, &mut frame_fds).unwrap_or_else(|e| die(&format!("a large task: {e}")))
        });
        let holders = mapped.as_ref().map_or(0, |(m, _)| Arc::strong_count(m));
        let p: &[u8] = match (frame.kind, &mapped) {
            (KIND_TASK, _) => frame.payload,
            (KIND_TASK_BIG, Some((m, len))) => &m.bytes()[..*len],
            (KIND_STOP, _) => {
                let _ = writer.flush(None);
                exit_cleanly();
            }
            (other, _) => die(&format!("unexpected frame kind {other:#04x}")),
        };
        let Some((TaskHead { id, trampoline, function, count }, body)) = TaskHead::decode(p) else {
            die("a task frame too short for its header")
        };
        after_express = id >= EXPRESS_IDS;
        // The parent made `trampoline` from a `Trampoline` monomorphised for this task's
        // function, argument and result types.
        let run: Trampoline = SameBuild::parent().function_at(trampoline);
        let t0 = Instant::now();
        let queued = writer.queue_spilling(KIND_RESULT, KIND_RESULT_BIG, SPILL_AT, |out| {
            let head = out.len();
            out.extend_from_slice(&[0; ResultHead::LEN]);
            bytes::sharing(mapped.as_ref().map(|(m, _)| m), || {
                fds::with_incoming(frame_fds, || {
                    let n = for_each_item(body, count, |_, arg| {
                        let at = begin_item(out);
                        out.push(TAG_OK);
                        // Only this process writes the counters: a plain store publishes.
                        items += 1;
                        started.store(items, Ordering::Release);
                        let tag = run(function, arg, out);
                        finished.store(items, Ordering::Release);
                        out[at + 4] = tag;
                        end_item(out, at);
                    });
                    if n != count {
                        die("a task frame with a cut item list");
                    }
                })
            });
            ended = Instant::now();
            let elapsed = ended.duration_since(t0).as_nanos() as u64;
            // Something still shares the body: the parent must not fill its memfd again.
            let kept_body = mapped.as_ref().is_some_and(|(m, _)| Arc::strong_count(m) > holders);
            ResultHead { id, elapsed, count, flags: ResultFlags { kept_body } }.write_at(&mut out[head..]);
            Ok(())
        });
        if let Some((m, _)) = &mapped
            && Arc::strong_count(m) > holders
        {
            spill_maps.forget(m);
        }
        if let Err(e) = queued {
            // Only a result over the frame limit gets here; the parent sees the worker end.
            die(&format!("cannot send a result: {e}"));
        }
        tasks_done += 1;
        let retire = if setup.max_tasks.is_some_and(|m| tasks_done >= m) {
            Some(Retire::MaxTasks)
        } else if let Some(limit) = setup.max_memory {
            match sys::proc::rss_bytes(sys::proc::getpid()) {
                Ok(rss) if rss > limit => Some(Retire::Memory { rss }),
                _ => None,
            }
        } else {
            None
        };
        if let Some(reason) = retire {
            let _ = writer.queue(KIND_RETIRE, &reason);
            let _ = writer.flush(None);
            exit_cleanly();
        }
        if writer.pending() > FLUSH_BYTES || ended.duration_since(last_flush) > FLUSH_AFTER {
            if writer.flush(None).is_err() {
                sys::proc::exit_now(0);
            }
            last_flush = ended;
        }
    }
}
