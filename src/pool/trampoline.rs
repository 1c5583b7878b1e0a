//! Trampolines: the monomorphised functions that run one item of a task in whatever
//! process runs it (a local worker, a cluster's worker, a bare task child). A task names
//! its trampoline by offset; the trampoline decodes the argument, calls the function,
//! catches a panic and encodes the outcome as a result item (see `item`).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::item::{PanicReport, TAG_CODEC, TAG_OK, TAG_PANIC};
use super::last_words::{self, LastWords};
use super::star::StarFn;
use crate::spawn::identity::SameBuild;
use crate::wire::codec;

/// Runs one item: decodes its argument from `arg`, calls the function named by the offset,
/// appends the encoded outcome to `out` and returns its tag.
pub(crate) type Trampoline = fn(i64, &[u8], &mut Vec<u8>) -> u8;

/// Runs an initializer; `Err` carries its panic.
pub(crate) type InitTrampoline = fn(i64, &[u8]) -> Result<(), String>;

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
    F: StarFn<Args>,
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
pub(crate) fn forget_panic() {
    // The hook sets `UNWINDING` whenever it speaks: one thread-local read per item when
    // no panic happened (this runs before every item).
    if UNWINDING.replace(false) {
        last_words::unsay();
    }
}

fn take_panic(payload: Box<dyn Any + Send>) -> PanicReport {
    let message = super::guard::panic_message(payload.as_ref());
    // A refusal of the sandbox's Landlock rules or private network is a plain OS error:
    // say which rule it was.
    #[cfg(feature = "sandbox")]
    let message = match crate::isolation::sandbox::explain(&message) {
        Some(why) => format!("{message} [{why}]"),
        None => message,
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
        // (`PanicHookInfo::payload_as_str` would need Rust 1.91; the crate's minimum is 1.88.)
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic with a non-string payload")
            .to_string();
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
