//! Panics the worker cannot simply catch around the call: in the argument's
//! `Deserialize`, in the value's `Serialize`, and a panic while unwinding (which aborts
//! the process, as every panic does under `panic = "abort"`). Each is the task's
//! `Panicked`, with its message and location (finding 3 of the accounting issue: they
//! were `WorkerDied` with exit code 101 or SIGABRT, the message lost).

use multiproc::{Pool, TaskError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

multiproc::test_init!();

/// Cannot be decoded when it holds 13 (only workers decode arguments).
#[derive(Debug, Clone, Copy)]
struct ArgPanics(u64);

impl Serialize for ArgPanics {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ArgPanics {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        assert!(n != 13, "the argument thirteen cannot be decoded");
        Ok(ArgPanics(n))
    }
}

/// Cannot be encoded when it holds 13 (only workers encode values).
#[derive(Debug, PartialEq, Deserialize)]
struct ValuePanics(u64);

impl Serialize for ValuePanics {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != 13, "the value thirteen cannot be encoded");
        self.0.serialize(s)
    }
}

fn take(a: ArgPanics) -> u64 {
    a.0
}

fn give(x: u64) -> ValuePanics {
    ValuePanics(x)
}

/// Panics when dropped during unwinding: a panic while panicking aborts the process.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            panic!("a drop that panics while unwinding");
        }
    }
}

fn double_panic(x: u64) -> u64 {
    let _guard = PanicsOnDrop;
    assert!(x != 13, "the first panic, at thirteen");
    x
}

fn expect_panicked<T: std::fmt::Debug>(r: &Result<T, TaskError>, text: &str) {
    match r {
        Err(TaskError::Panicked { message, location, .. }) => {
            assert!(message.contains(text), "message: {message}");
            assert!(location.contains(".rs:"), "location: {location}");
        }
        other => panic!("expected a panic with {text:?}, got {other:?}"),
    }
}

#[test]
fn a_panic_decoding_the_argument_is_the_tasks_panic() {
    let pool = Pool::new(2).unwrap();
    let results = pool.map_results(take, (0..20).map(ArgPanics));
    for (i, r) in results.iter().enumerate() {
        if i == 13 {
            expect_panicked(r, "the argument thirteen cannot be decoded");
        } else {
            assert_eq!(r.as_ref().ok(), Some(&(i as u64)));
        }
    }
    expect_panicked(&pool.apply(take, ArgPanics(13)), "the argument thirteen");
    assert_eq!(pool.stats().workers_died, 0, "the worker survives a caught panic");
}

#[test]
fn a_panic_encoding_the_value_is_the_tasks_panic() {
    let pool = Pool::new(2).unwrap();
    let handles: Vec<_> = (0..20).map(|i| pool.apply_async(give, i)).collect();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.get();
        if i == 13 {
            expect_panicked(&r, "the value thirteen cannot be encoded");
        } else {
            assert_eq!(r.unwrap(), ValuePanics(i as u64));
        }
    }
    assert_eq!(pool.stats().workers_died, 0);
}

#[test]
fn a_panic_that_aborts_the_worker_still_reports_its_message() {
    let pool = Pool::new(2).unwrap();
    let results = pool.map_results(double_panic, 0..20);
    for (i, r) in results.iter().enumerate() {
        if i == 13 {
            expect_panicked(r, "the first panic, at thirteen");
        } else {
            assert_eq!(r.as_ref().ok(), Some(&(i as u64)), "item {i}");
        }
    }
    expect_panicked(&pool.apply(double_panic, 13), "the first panic");
    let stats = pool.stats();
    assert_eq!(stats.workers_died, 2, "the process aborted each time: {stats:?}");
    assert_eq!(stats.tasks_panicked, 2);
    assert_eq!(pool.apply(double_panic, 1).unwrap(), 1, "the pool goes on");
}
