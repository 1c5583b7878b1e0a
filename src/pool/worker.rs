//! The worker side: a child that runs tasks one after another, in the order it got them.
//!
//! Tasks run on the worker's main thread, FIFO, so when a worker dies its parent knows
//! the culprit: the item the shared counters say was started and not finished. Results
//! are batched: the worker sends them when it has nothing more to read, when a batch
//! grows large, or a short while after the last send.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::last_words;
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
    // The parent made `function` with `encode_fn::<F, fn(A) -> R>` and named this
    // trampoline for it.
    let f: F = SameBuild::parent().decode_fn::<F>(function);
    run_caught(move || codec::decode::<A>(arg).map(f), out)
}

pub(crate) fn star_trampoline<F, Args>(function: i64, arg: &[u8], out: &mut Vec<u8>) -> u8
where
    F: super::StarFn<Args>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    // As in `unary_trampoline`, with `encode_fn::<F, F::Ptr>`.
    let f: F = SameBuild::parent().decode_fn::<F>(function);
    run_caught(move || codec::decode::<Args>(arg).map(|a| f.call(a)), out)
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
        forget_panic();
        let r = take_panic(p);
        format!("panicked at {}: {}", r.location, r.message)
    })
}

fn codec_failure(message: &str, out: &mut Vec<u8>) -> u8 {
    let _ = codec::encode_into(message, out);
    TAG_CODEC
}

/// Runs `call` (which decodes the argument and calls the function) and encodes its value,
/// all under one guard: a panic in the argument's `Deserialize`, the function, or the
/// value's `Serialize` is the task's `Panicked`, with its message.
fn run_caught<R: Serialize>(call: impl FnOnce() -> Result<R, crate::wire::CodecError>, out: &mut Vec<u8>) -> u8 {
    let start = out.len();
    let r = catch_unwind(AssertUnwindSafe(|| match call() {
        Ok(value) => codec::encode_into(&value, out).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }));
    match r {
        Ok(Ok(())) => TAG_OK,
        Ok(Err(message)) => {
            out.truncate(start);
            codec_failure(&message, out)
        }
        Err(payload) => {
            out.truncate(start);
            forget_panic();
            let report = take_panic(payload);
            let _ = codec::encode_into(&report, out);
            TAG_PANIC
        }
    }
}

thread_local! {
    /// Where the panic hook leaves the location and backtrace of the panic being caught.
    static LAST_PANIC: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
    /// A panic is unwinding and has not been caught yet (so a second one is nested in it).
    static UNWINDING: Cell<bool> = const { Cell::new(false) };
}

/// A panic was caught (or a new item starts): the worker lives on, and has nothing to
/// say about any panic before.
fn forget_panic() {
    UNWINDING.set(false);
    last_words::unsay();
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
/// It is also left as the worker's last words, for a panic the process does not survive
/// (`panic = "abort"`, a panic while panicking); a caught panic takes them back.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| l.to_string()).unwrap_or_else(|| "<unknown>".into());
        let bt = std::backtrace::Backtrace::capture();
        let backtrace = match bt.status() {
            std::backtrace::BacktraceStatus::Captured => Some(bt.to_string()),
            _ => None,
        };
        let message = info.payload_as_str().unwrap_or("a panic with a non-string payload").to_string();
        if UNWINDING.replace(true) {
            // A panic while unwinding from another (a `Drop` that panics): the process
            // aborts, and the first panic is the one to report.
            return;
        }
        last_words::say(&LastWords::Panic(PanicReport {
            message,
            location: location.clone(),
            backtrace: backtrace.clone(),
        }));
        LAST_PANIC.with(|l| *l.borrow_mut() = Some((location, backtrace)));
    }));
}

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

/// A result frame in which each of `count` items failed with `message`.
fn write_failed_result(out: &mut Vec<u8>, id: u64, count: u32, message: &str) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    for _ in 0..count {
        let at = begin_item(out);
        out.push(TAG_CODEC);
        let _ = codec::encode_into(message, out);
        end_item(out, at);
    }
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
        (setup, Arc::new(counters))
    };
    last_words::install(counters.clone());
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
            if let Err(e) = writer.flush(None) {
                lost_connection("send its results", &e);
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
            // The pool is gone (nothing to report to), or a task closed the socket.
            Err(e) => lost_connection("read its next task", &e),
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
                        forget_panic();
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
            // The values cannot travel (over the frame limit, or no memfd for them): each
            // item gets the reason instead, and the worker goes on.
            let message = format!("the task's result cannot be sent: {e}");
            let failed = writer.queue_spilling(KIND_RESULT, KIND_RESULT_BIG, SPILL_AT, |out| {
                write_failed_result(out, id, count, &message);
                Ok(())
            });
            if let Err(e) = failed {
                die(&format!("{message}; nor can that error: {e}"));
            }
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
            if let Err(e) = writer.flush(None) {
                lost_connection("send its results", &e);
            }
            last_flush = ended;
        }
    }
}
