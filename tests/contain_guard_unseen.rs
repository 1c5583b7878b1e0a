//! The containment guard of a worker is invisible to a task: a task that waits for "any
//! child" of its worker (as a task that forks and reaps does) finds none it did not start,
//! with a cgroup (the guard is a quiet child of the worker) and with the process tree (the
//! guard is detached by a double fork).

use multiproc::{Contain, Process};

mod contain_common;
use contain_common::*;

multiproc::test_init!();

/// What `waitpid(-1, WNOHANG)` says in the worker: "no child" unless it has one.
fn wait_any(_: ()) -> String {
    match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
        Err(rustix::io::Errno::CHILD) => "no child".to_string(),
        Err(e) => format!("error {e}"),
        Ok(None) => "a child that runs".to_string(),
        Ok(Some((pid, status))) => format!("child {pid:?} ended: {status:?}"),
    }
}

fn target(conn: multiproc::Connection<String>) {
    conn.send(wait_any(())).unwrap();
}

#[test]
fn a_task_waiting_for_any_child_finds_none_with_a_cgroup() {
    let pool = pool_of_one(Contain::Auto);
    assert_eq!(pool.apply(wait_any, ()).unwrap(), "no child");
}

#[test]
fn a_task_waiting_for_any_child_finds_none_with_the_process_tree() {
    let pool = pool_of_one(Contain::ProcessTree);
    assert_eq!(pool.apply(wait_any, ()).unwrap(), "no child");
}

#[test]
fn a_process_waiting_for_any_child_finds_none() {
    for contain in [Contain::Auto, Contain::ProcessTree] {
        let (ours, theirs) = multiproc::Pipe::simplex::<String>().unwrap();
        let mut p = Process::new(target, theirs).contain(contain);
        p.start().unwrap();
        assert_eq!(ours.recv().unwrap(), "no child", "{contain:?}");
        p.join().unwrap();
    }
}
