//! The worker side: a child that runs tasks one after another, in the order it got them.
//!
//! Tasks run on the worker's main thread, FIFO, so when a worker dies its parent knows
//! the culprit: the item the shared counters say was started and not finished. Results
//! are batched: the worker sends them when it has nothing more to read, when a batch
//! grows large, or a short while after the last send.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::protocol::*;
use crate::bytes;
use crate::spawn::identity::SameBuild;
use crate::spawn::{self, ChildContext};
use crate::sys;
use crate::sys::mem::SharedCounters;
use crate::wire::frame::{REPLY_SPIN, SpillMaps};
use crate::wire::{codec, fds};

/// Runs one item: decodes its argument from `arg`, calls the function named by the offset,
/// appends the encoded outcome to `out` and returns its tag.
pub(crate) type Trampoline = fn(i64, &[u8], &mut Vec<u8>) -> u8;

/// Runs an initializer; `Err` carries its panic.
pub(crate) type InitTrampoline = fn(i64, &[u8]) -> Result<(), String>;

/// Results wait at most this long in the worker before being sent.
const FLUSH_AFTER: Duration = Duration::from_micros(200);
/// A batch of results this large is sent at once.
const FLUSH_BYTES: usize = 64 * 1024;

pub(crate) fn unary_trampoline<F, A, R>(function: i64, arg: &[u8], out: &mut Vec<u8>) -> u8
where
    F: Fn(A) -> R + Copy + Send + 'static,
    A: DeserializeOwned,
    R: Serialize,
{
    let a: A = match codec::decode(arg) {
        Ok(a) => a,
        Err(e) => return codec_failure(&e.to_string(), out),
    };
    // The parent made `function` with `encode_fn::<F, fn(A) -> R>` and named this
    // trampoline for it.
    let f: F = SameBuild::parent().decode_fn::<F>(function);
    run_caught(move || f(a), out)
}

pub(crate) fn star_trampoline<F, Args>(function: i64, arg: &[u8], out: &mut Vec<u8>) -> u8
where
    F: super::StarFn<Args>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    let a: Args = match codec::decode(arg) {
        Ok(a) => a,
        Err(e) => return codec_failure(&e.to_string(), out),
    };
    // As in `unary_trampoline`, with `encode_fn::<F, F::Ptr>`.
    let f: F = SameBuild::parent().decode_fn::<F>(function);
    run_caught(move || f.call(a), out)
}

pub(crate) fn init_trampoline<F, A>(function: i64, arg: &[u8]) -> Result<(), String>
where
    F: Fn(A) + Copy + Send + 'static,
    A: DeserializeOwned,
{
    let a: A = codec::decode(arg).map_err(|e| e.to_string())?;
    // The parent made `function` with `encode_fn::<F, fn(A)>` for this trampoline.
    let f: F = SameBuild::parent().decode_fn::<F>(function);
    catch_unwind(AssertUnwindSafe(move || f(a))).map_err(|p| {
        let r = take_panic(p);
        format!("panicked at {}: {}", r.location, r.message)
    })
}

fn codec_failure(message: &str, out: &mut Vec<u8>) -> u8 {
    let _ = codec::encode_into(message, out);
    TAG_CODEC
}

fn run_caught<R: Serialize>(call: impl FnOnce() -> R, out: &mut Vec<u8>) -> u8 {
    let start = out.len();
    // Encoding runs inside the guard too: a `Serialize` impl may panic.
    let r =
        catch_unwind(AssertUnwindSafe(call)).map(|value| codec::encode_into(&value, out).map_err(|e| e.to_string()));
    match r {
        Ok(Ok(())) => TAG_OK,
        Ok(Err(message)) => {
            out.truncate(start);
            codec_failure(&message, out)
        }
        Err(payload) => {
            out.truncate(start);
            let report = take_panic(payload);
            let _ = codec::encode_into(&report, out);
            TAG_PANIC
        }
    }
}

thread_local! {
    /// Where the panic hook leaves the location and backtrace of the panic being caught.
    static LAST_PANIC: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

fn take_panic(payload: Box<dyn Any + Send>) -> PanicReport {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    };
    let (location, backtrace) = LAST_PANIC.with(|l| l.borrow_mut().take()).unwrap_or(("<unknown>".into(), None));
    PanicReport { message, location, backtrace }
}

/// Records where a task panicked instead of printing it: the panic travels to the caller.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| l.to_string()).unwrap_or_else(|| "<unknown>".into());
        let bt = std::backtrace::Backtrace::capture();
        let backtrace = match bt.status() {
            std::backtrace::BacktraceStatus::Captured => Some(bt.to_string()),
            _ => None,
        };
        LAST_PANIC.with(|l| *l.borrow_mut() = Some((location, backtrace)));
    }));
}

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
        let (Some(id), Some(tramp), Some(function), Some(count)) =
            (u64_at(p, 0), u64_at(p, 8), u64_at(p, 16), u32_at(p, 24))
        else {
            die("a task frame too short for its header")
        };
        after_express = id >= EXPRESS_IDS;
        // The parent made `tramp` from a `Trampoline` monomorphised for this task's
        // function, argument and result types.
        let run: Trampoline = SameBuild::parent().function_at(tramp as i64);
        let body = &p[TASK_HEAD..];
        let t0 = Instant::now();
        let queued = writer.queue_spilling(KIND_RESULT, KIND_RESULT_BIG, SPILL_AT, |out| {
            let head = out.len();
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&count.to_le_bytes());
            bytes::sharing(mapped.as_ref().map(|(m, _)| m), || {
                fds::with_incoming(frame_fds, || {
                    let n = for_each_item(body, count, |_, arg| {
                        let at = begin_item(out);
                        out.push(TAG_OK);
                        // Only this process writes the counters: a plain store publishes.
                        items += 1;
                        started.store(items, Ordering::Release);
                        let tag = run(function as i64, arg, out);
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
            let mut elapsed = ended.duration_since(t0).as_nanos() as u64 & !RESULT_KEPT_BODY;
            // Something still shares the body: the parent must not fill its memfd again.
            if mapped.as_ref().is_some_and(|(m, _)| Arc::strong_count(m) > holders) {
                elapsed |= RESULT_KEPT_BODY;
            }
            out[head + 8..head + 16].copy_from_slice(&elapsed.to_le_bytes());
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
