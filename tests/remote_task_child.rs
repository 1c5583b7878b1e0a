//! The core's piece for cluster workers: a child that runs tasks named by offsets, one
//! after another. A task that panics costs only itself; one that kills its process or
//! runs past its timeout ends that child with a clear report; a task of another build is
//! refused before anything is interpreted.

use std::time::Duration;

use multiproc::remote::{RemoteTask, RunError, TaskChild, decode_value, encode_value, fingerprint, task_code};

multiproc::test_init!();

fn square(n: u64) -> u64 {
    n * n
}

fn fails(why: String) -> u64 {
    match why.as_str() {
        "panic" => panic!("asked to panic"),
        "abort" => std::process::abort(),
        "exit" => std::process::exit(7),
        _ => {
            std::thread::sleep(Duration::from_secs(3600));
            0
        }
    }
}

fn run<A: serde::Serialize>(
    child: &mut TaskChild,
    code: multiproc::remote::TaskCode,
    arg: &A,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, RunError> {
    let mut bytes = Vec::new();
    encode_value(arg, &mut bytes).unwrap();
    let task = RemoteTask {
        fingerprint: fingerprint(),
        function: code.function,
        trampoline: code.trampoline,
        function_name: code.function_name,
        arg: &bytes,
    };
    child.run(&task, timeout)
}

#[test]
fn a_child_runs_many_tasks_and_survives_a_panic() {
    let mut child = TaskChild::start("TaskChild-test").unwrap();
    let code = task_code(square);
    for n in 0..50u64 {
        let out = run(&mut child, code, &n, None).unwrap();
        assert_eq!(decode_value::<u64>(&out).unwrap(), n * n);
    }
    let e = run(&mut child, task_code(fails), &"panic".to_string(), None).unwrap_err();
    match &e {
        RunError::Panicked { message, location, .. } => {
            assert_eq!(message, "asked to panic");
            assert!(location.as_deref().unwrap_or("").contains("remote_task_child.rs"), "{e}");
        }
        other => panic!("unexpected: {other}"),
    }
    assert!(e.to_string().contains("fails"), "the message names the task: {e}");
    let out = run(&mut child, code, &9u64, None).unwrap();
    assert_eq!(decode_value::<u64>(&out).unwrap(), 81);
}

#[test]
fn a_task_that_aborts_or_exits_costs_its_child_and_says_how() {
    let mut child = TaskChild::start("TaskChild-test").unwrap();
    let pid = child.pid();
    match run(&mut child, task_code(fails), &"abort".to_string(), None).unwrap_err() {
        RunError::Died { pid: p, exitcode, .. } => assert_eq!((p, exitcode), (pid, -SIGABRT)),
        other => panic!("unexpected: {other}"),
    }
    assert!(!child.is_usable());
    assert!(matches!(run(&mut child, task_code(square), &1u64, None), Err(RunError::Ended { .. })));
    let mut child = TaskChild::start("TaskChild-test").unwrap();
    match run(&mut child, task_code(fails), &"exit".to_string(), None).unwrap_err() {
        RunError::Died { exitcode, .. } => assert_eq!(exitcode, 7),
        other => panic!("unexpected: {other}"),
    }
}

const SIGABRT: i32 = 6;

#[test]
fn a_task_past_its_timeout_is_killed() {
    let mut child = TaskChild::start("TaskChild-test").unwrap();
    let e = run(&mut child, task_code(fails), &"hang".to_string(), Some(Duration::from_millis(200))).unwrap_err();
    assert!(matches!(e, RunError::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("timed out"), "{e}");
}

#[test]
fn a_task_of_another_build_is_refused_without_running() {
    let mut child = TaskChild::start("TaskChild-test").unwrap();
    let code = task_code(square);
    let bytes = {
        let mut b = Vec::new();
        encode_value(&3u64, &mut b).unwrap();
        b
    };
    let task = RemoteTask {
        fingerprint: fingerprint() ^ 1,
        function: code.function,
        trampoline: code.trampoline,
        function_name: code.function_name,
        arg: &bytes,
    };
    let e = child.run(&task, None).unwrap_err();
    assert!(matches!(e, RunError::WrongBinary { .. }), "{e}");
    assert!(e.to_string().contains("different build"), "{e}");
    // The child was not touched and still works.
    let out = run(&mut child, code, &4u64, None).unwrap();
    assert_eq!(decode_value::<u64>(&out).unwrap(), 16);
}

#[test]
fn an_argument_of_the_wrong_type_is_a_codec_error() {
    let mut child = TaskChild::start("TaskChild-test").unwrap();
    let e = run(&mut child, task_code(fails), &u64::MAX, None).unwrap_err();
    assert!(matches!(e, RunError::Codec { .. }), "{e}");
    assert!(e.to_string().contains("String"), "the message names the type: {e}");
    assert!(child.is_usable());
}
