//! Ctrl-C in a terminal sends SIGINT to the whole foreground process group: the program
//! and its pool's workers. The workers ignore it, so a running task is not killed by it:
//! the program decides. One that handles Ctrl-C lets its running task finish; one that
//! does not dies of it as before, and its workers with it.
//!
//! Each program here leads a process group of its own (`setsid`), as a program started
//! from a shell does. Its pool's workers each lead a group of their own (so that a task's
//! `kill 0` cannot reach the program: `tests/pool_task_signals_its_process_group.rs`),
//! which a terminal's Ctrl-C does not reach; they ignore SIGINT as well.

use multiproc::{Connection, Contain, Pipe, Pool, Process};
use rustix::process::{Pid, PidfdFlags, Signal, getpgid, kill_process_group, pidfd_open, setsid};

multiproc::test_init!();

/// The task: says it runs (with its pid), waits to be told what to return, returns it.
fn guarded(conn: Connection<u32>) -> u32 {
    conn.send(std::process::id()).unwrap();
    conn.recv().unwrap()
}

/// A program that handles Ctrl-C: once it comes, it waits for its running task and ends
/// with 0 if the task finished, 1 if it failed.
fn program_with_a_handler(conn: Connection<u32>) {
    setsid().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut interrupt = {
        let _in = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).unwrap()
    };
    let pool = Pool::builder().processes(1).contain(Contain::Off).build().unwrap();
    let running = pool.apply_async(guarded, conn);
    rt.block_on(interrupt.recv());
    let outcome = running.get();
    pool.terminate();
    std::process::exit(if outcome == Ok(42) { 0 } else { 1 });
}

/// A program that leaves Ctrl-C to its default: it dies of it.
fn program_without_a_handler(conn: Connection<u32>) {
    setsid().unwrap();
    let pool = Pool::builder().processes(1).contain(Contain::Off).build().unwrap();
    let _ = pool.apply(guarded, conn);
    std::process::exit(1);
}

/// Starts `program`, waits for its task to run, then sends SIGINT to the program's whole
/// process group (what a terminal's Ctrl-C does); returns the program, the task's
/// process, and the test's end of the task's connection.
fn interrupt_while_a_task_runs(program: fn(Connection<u32>)) -> (Process, u32, Connection<u32>) {
    let (mine, theirs) = Pipe::duplex::<u32>().unwrap();
    let mut p = Process::new(program, theirs).contain(Contain::Off);
    p.start().unwrap();
    let task_pid = mine.recv().unwrap();
    let leader = Pid::from_raw(p.pid().unwrap() as i32).unwrap();
    let task = Pid::from_raw(task_pid as i32).unwrap();
    assert_eq!(getpgid(Some(leader)).unwrap(), leader, "the program leads its own group");
    assert_eq!(getpgid(Some(task)).unwrap(), task, "the task's worker leads a group of its own");
    kill_process_group(leader, Signal::INT).unwrap();
    (p, task_pid, mine)
}

#[test]
fn ctrl_c_leaves_a_running_task_to_the_program_that_handles_it() {
    let (p, _task, conn) = interrupt_while_a_task_runs(program_with_a_handler);
    // The signal was delivered to the program's whole group when `kill` returned; the
    // task's process is still there to finish.
    conn.send(42).unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0), "the task finished after Ctrl-C and the program ended");
}

#[test]
fn ctrl_c_still_ends_a_program_without_a_handler_and_its_workers() {
    let (p, task, _conn) = interrupt_while_a_task_runs(program_without_a_handler);
    let worker = pidfd_open(Pid::from_raw(task as i32).unwrap(), PidfdFlags::empty());
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-2), "the program died of SIGINT");
    // The worker goes with its program (a pidfd is readable once its process exited; an
    // error opening it means it is gone already).
    if let Ok(fd) = worker {
        let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
        let limit = rustix::event::Timespec { tv_sec: 60, tv_nsec: 0 };
        assert_eq!(rustix::event::poll(&mut fds, Some(&limit)).unwrap(), 1, "worker {task} outlived its program");
    }
}
