//! The faults a task can commit, the task that commits them, and the argument and
//! result types whose serde can be made to panic on either side.

use std::time::Duration;

use multiproc::TaskError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The exit code of a task that calls `exit`.
pub const EXIT_CODE: i32 = 3;
/// A result this large is past the frame limit (2 GiB).
/// The frame limit of every chaos pool (`PoolBuilder::max_frame_size`), so that an
/// oversized result costs megabytes, not the default limit's gigabytes.
pub const CHAOS_MAX_FRAME: u32 = 16 << 20;
const OVERSIZED_BYTES: usize = CHAOS_MAX_FRAME as usize + 4096;

/// One thing a task can do to its worker (or to the parent, through its result).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Fault {
    /// No fault: the task returns its value.
    None,
    /// `panic!` in the task.
    Panic,
    /// SIGKILL to its own process.
    SigKill,
    /// SIGSTOP to its own process; only scheduled with a per-task timeout.
    SigStop,
    /// A real segmentation fault.
    Segfault,
    /// `std::process::abort`.
    Abort,
    /// `std::process::exit(EXIT_CODE)`.
    Exit,
    /// Closes descriptors 3..64 of its worker, then returns.
    ClosedFds,
    /// Returns a result over the 2 GiB frame limit.
    Oversized,
    /// Returns a result whose `Deserialize` panics in the parent.
    ResultDecodePanic,
    /// Gets an argument whose `Deserialize` panics in the worker.
    ArgDecodePanic,
    /// Returns a result whose `Serialize` panics in the worker.
    ResultEncodePanic,
    /// Overwrites its worker's counter page (the page it shares with its pool: items
    /// started, finished) with counters no truthful worker leaves, as a stray write
    /// would, then aborts.
    ScribbledCounters,
    /// Truncates every shared-memory file its worker has open, then returns its value.
    TruncatedFiles,
}

impl Fault {
    /// Every fault a pool run can inject.
    pub const ALL: [Fault; 13] = [
        Fault::Panic,
        Fault::SigKill,
        Fault::SigStop,
        Fault::Segfault,
        Fault::Abort,
        Fault::Exit,
        Fault::ClosedFds,
        Fault::Oversized,
        Fault::ResultDecodePanic,
        Fault::ArgDecodePanic,
        Fault::ResultEncodePanic,
        Fault::ScribbledCounters,
        Fault::TruncatedFiles,
    ];

    /// The name used in `KNOWN_BROKEN` and `MULTIPROC_CHAOS_FAULTS`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Panic => "panic",
            Fault::SigKill => "sigkill",
            Fault::SigStop => "sigstop",
            Fault::Segfault => "segfault",
            Fault::Abort => "abort",
            Fault::Exit => "exit",
            Fault::ClosedFds => "closed_fds",
            Fault::Oversized => "oversized",
            Fault::ResultDecodePanic => "result_decode_panic",
            Fault::ArgDecodePanic => "arg_decode_panic",
            Fault::ResultEncodePanic => "result_encode_panic",
            Fault::ScribbledCounters => "scribbled_counters",
            Fault::TruncatedFiles => "truncated_files",
        }
    }

    /// Whether the item still gives its value.
    pub fn gives_value(self) -> bool {
        matches!(self, Fault::None | Fault::TruncatedFiles)
    }
}

/// A task's argument. Its `Deserialize` (in the worker) panics when `fault` says so.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(from = "InWire")]
pub struct In {
    pub index: u64,
    pub fault: Fault,
}

#[derive(Deserialize)]
struct InWire {
    index: u64,
    fault: Fault,
}

impl From<InWire> for In {
    fn from(w: InWire) -> In {
        if w.fault == Fault::ArgDecodePanic {
            panic!("chaos: arg decode of item {}", w.index);
        }
        In { index: w.index, fault: w.fault }
    }
}

/// A task's result. Its `Serialize` (in the worker) or `Deserialize` (in the parent)
/// panics when `fault` says so.
#[derive(Clone, Debug, PartialEq)]
pub struct Out {
    pub index: u64,
    pub value: u64,
    pub fault: Fault,
    pub pad: Vec<u8>,
}

impl Serialize for Out {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.fault == Fault::ResultEncodePanic {
            panic!("chaos: result encode of item {}", self.index);
        }
        (self.index, self.value, self.fault, &self.pad).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Out {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Out, D::Error> {
        let (index, value, fault, pad) = <(u64, u64, Fault, Vec<u8>)>::deserialize(d)?;
        if fault == Fault::ResultDecodePanic {
            panic!("chaos: result decode of item {index}");
        }
        Ok(Out { index, value, fault, pad })
    }
}

/// The value item `index` must give.
pub fn value_of(index: u64) -> u64 {
    index.wrapping_mul(7) + 3
}

/// The pool task: commits its fault, then returns its value.
pub fn chaos_task(arg: In) -> Out {
    commit(arg.fault, arg.index);
    let pad = if arg.fault == Fault::Oversized { vec![1u8; OVERSIZED_BYTES] } else { Vec::new() };
    Out { index: arg.index, value: value_of(arg.index), fault: arg.fault, pad }
}

/// The same for `starmap`: two arguments.
pub fn chaos_star(arg: In, salt: u64) -> Out {
    let mut out = chaos_task(arg);
    out.value = out.value.wrapping_add(salt);
    out
}

// A real segfault and closing descriptors by number are faults under test; no safe API
// does either.
#[allow(unsafe_code)]
fn commit(fault: Fault, index: u64) {
    let me = rustix::process::getpid();
    match fault {
        Fault::Panic => panic!("chaos: panic in item {index}"),
        Fault::SigKill => {
            let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
            std::thread::sleep(Duration::from_secs(3600));
        }
        Fault::SigStop => {
            let _ = rustix::process::kill_process(me, rustix::process::Signal::STOP);
        }
        // SAFETY: a deliberately invalid write (address 8, never mapped): the test needs a
        // real SIGSEGV, and the process dies before anything else runs.
        Fault::Segfault => unsafe { std::ptr::write_volatile(std::ptr::dangling_mut::<u64>(), 1) },
        Fault::Abort => std::process::abort(),
        Fault::Exit => std::process::exit(EXIT_CODE),
        Fault::ClosedFds => {
            for fd in 3..64 {
                // SAFETY: closing descriptors this process may be using is the fault under
                // test; nothing in this single-threaded task holds a borrow of them.
                unsafe { libc::close(fd) };
            }
        }
        Fault::ScribbledCounters => {
            scribble_counters();
            std::process::abort();
        }
        Fault::TruncatedFiles => truncate_shared_memory(),
        Fault::None
        | Fault::Oversized
        | Fault::ResultDecodePanic
        | Fault::ArgDecodePanic
        | Fault::ResultEncodePanic => {}
    }
}

/// Overwrites the first two words of this process's pool counter page: `started` five
/// items past `finished`, which is one past the item running.
fn scribble_counters() {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let Some(line) = maps.lines().find(|l| l.contains("multiproc-counters")) else { return };
    let at = u64::from_str_radix(line.split('-').next().unwrap(), 16).unwrap();
    let mem = std::fs::OpenOptions::new().read(true).write(true).open("/proc/self/mem").unwrap();
    let mut started = [0u8; 8];
    mem.read_exact_at(&mut started, at).unwrap();
    let running = u64::from_le_bytes(started);
    let _ = mem.write_all_at(&(running + 5).to_le_bytes(), at);
    let _ = mem.write_all_at(&running.to_le_bytes(), at + 8);
}

/// Truncates to nothing every memfd this process has open (those it shares with its pool
/// must be sealed against it).
fn truncate_shared_memory() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return };
    for entry in dir.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        if target.to_string_lossy().starts_with("/memfd:") {
            let _ = std::fs::OpenOptions::new().write(true).open(entry.path()).and_then(|f| f.set_len(0));
        }
    }
}

/// Whether `r` is the right outcome for item `index` with `fault`, given `retries`.
pub fn check_outcome(
    index: u64,
    fault: Fault,
    salt: u64,
    retries: u32,
    r: &Result<Out, TaskError>,
) -> Result<(), String> {
    let bad = |why: &str| Err(format!("item {index} ({}): {why}: got {r:?}", fault.name()));
    let r = match r {
        Ok(out) if fault.gives_value() => {
            if out.index == index && out.value == value_of(index).wrapping_add(salt) {
                return Ok(());
            }
            return bad("wrong value");
        }
        Ok(_) => return bad("a value where an error was due"),
        Err(e) => e,
    };
    check_error(index, fault, retries, r).or_else(|why| bad(&why))
}

fn check_error(index: u64, fault: Fault, retries: u32, e: &TaskError) -> Result<(), String> {
    let died = |want_signal: Option<i32>, want_exit: Option<i32>| match e {
        TaskError::WorkerDied { signal, exit_code, attempts, .. } => {
            if *signal != want_signal || *exit_code != want_exit {
                return Err(format!("wrong cause of death (want signal {want_signal:?} exit {want_exit:?})"));
            }
            if attempts.len() != retries as usize + 1 {
                return Err(format!("{} attempts with {retries} retries", attempts.len()));
            }
            Ok(())
        }
        _ => Err("want WorkerDied".into()),
    };
    let panicked = |want: String| match e {
        TaskError::Panicked { message, .. } if message.contains(&want) => Ok(()),
        _ => Err(format!("want Panicked with `{want}`")),
    };
    match fault {
        Fault::None | Fault::TruncatedFiles => Err("an error where a value was due".into()),
        Fault::Panic => panicked(format!("chaos: panic in item {index}")),
        Fault::SigKill => died(Some(9), None),
        Fault::Segfault => died(Some(11), None),
        Fault::Abort | Fault::ScribbledCounters => died(Some(6), None),
        Fault::Exit => died(None, Some(EXIT_CODE)),
        Fault::SigStop => match e {
            TaskError::Timeout { .. } => Ok(()),
            _ => Err("want Timeout".into()),
        },
        // The worker could not send this item's result: its death is charged to it.
        // (With the worker's last words, which set it apart from other deaths when
        // outcomes come back unordered.)
        Fault::ClosedFds => match e {
            TaskError::WorkerDied { hint: Some(h), .. } if h.contains("connection to the pool") => Ok(()),
            _ => Err("want WorkerDied naming the lost connection".into()),
        },
        // Too large to send: this item fails by itself, the worker goes on.
        Fault::Oversized => match e {
            TaskError::Codec { message, .. } if message.contains("cannot be sent") => Ok(()),
            _ => Err("want Codec saying the result cannot be sent".into()),
        },
        Fault::ResultDecodePanic => match e {
            TaskError::Codec { message, .. } | TaskError::Panicked { message, .. }
                if message.contains("chaos: result decode") =>
            {
                Ok(())
            }
            _ => Err("want Codec or Panicked naming the result's decode".into()),
        },
        Fault::ArgDecodePanic => panicked(format!("chaos: arg decode of item {index}")),
        Fault::ResultEncodePanic => panicked(format!("chaos: result encode of item {index}")),
    }
}
